"""Pure PyTorch autoencoders: no Ray, no MLflow, so they run anywhere a GPU is.

import models
model = models.build_model("vae", {"latent_dim": 2, "recon_loss": "bce"})
model = models.load("runs/vae1")          # eval mode, weights loaded without pickled code
z = model.encode(x); x_hat = model.reconstruct(x)   # x: (N, 1, 28, 28) in [0, 1]
"""

from models.base import AEOutput, AutoEncoder, ModelConfig
from models.checkpoint import load, load_training_state, read_config, save
from models.errors import ConfigError, ResourceError, StudyError
from models.registry import DENOISING_MODELS, MODELS, build_model, make_config, model_fields
from models.supervised import Classifier

__all__ = [
    "DENOISING_MODELS",
    "MODELS",
    "AEOutput",
    "AutoEncoder",
    "Classifier",
    "ConfigError",
    "ModelConfig",
    "ResourceError",
    "StudyError",
    "build_model",
    "load",
    "load_training_state",
    "make_config",
    "model_fields",
    "read_config",
    "save",
]
