"""Pure PyTorch autoencoders: no Ray, no MLflow, so they run anywhere a GPU is.

import models
model = models.build_model("vae", {"latent_dim": 2, "recon_loss": "bce"})
model = models.load("runs/vae1")          # eval mode, weights loaded without pickled code
z = model.encode(x); x_hat = model.reconstruct(x)   # x: (N, 1, 28, 28) in [0, 1]

The errors load at once; everything else (torch and the models) on first use, so that code
which only needs `models.ConfigError` (the read-only views) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from models.errors import ConfigError, ResourceError, StudyError

# Each public name and the module that defines it, imported when first asked for.
_LAZY = {
    "AEOutput": "models.base",
    "AutoEncoder": "models.base",
    "ModelConfig": "models.base",
    "load": "models.checkpoint",
    "load_training_state": "models.checkpoint",
    "read_config": "models.checkpoint",
    "save": "models.checkpoint",
    "DENOISING_MODELS": "models.registry",
    "MODELS": "models.registry",
    "build_model": "models.registry",
    "make_config": "models.registry",
    "model_fields": "models.registry",
    "Classifier": "models.supervised",
}

__all__ = ["ConfigError", "ResourceError", "StudyError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
