"""What a trained autoencoder looks like to someone who only wants to use it: flattened digits in,
reconstructions (or codes) out, deterministic, with nothing of this project needed to run it.

These are the modules `study export` traces with `torch.export` into MLflow Models. The input
is what MNIST loaders and data frames hold: rows of 784 pixels in [0, 1]."""

from __future__ import annotations

import torch
from torch import nn

from models.base import IMAGE_SHAPE, PIXELS, AutoEncoder


class Reconstructor(nn.Module):
    """Digits (N, 784) in [0, 1] -> reconstructions (N, 784) in [0, 1]; deterministic (the VAE
    decodes the mean of q(z|x), a denoising model sees its input uncorrupted)."""

    def __init__(self, model: AutoEncoder) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, digits: torch.Tensor) -> torch.Tensor:
        images = digits.reshape(digits.shape[0], *IMAGE_SHAPE)
        return self.model.reconstruct(images).reshape(digits.shape[0], PIXELS)


class Encoder(nn.Module):
    """Digits (N, 784) in [0, 1] -> latent codes (N, code_dim); the VAE's is the mean of q(z|x)."""

    def __init__(self, model: AutoEncoder) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, digits: torch.Tensor) -> torch.Tensor:
        return self.model.encode(digits.reshape(digits.shape[0], *IMAGE_SHAPE))
