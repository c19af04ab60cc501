"""The seed's supervised phase ("SL model"): a softmax head on the code, encoder fine-tuned."""

from __future__ import annotations

import copy

import torch
from torch import nn

from models.base import AutoEncoder


class Classifier(nn.Module):
    """A linear classification head on a *copy* of an autoencoder's encoder.

    The copy keeps fine-tuning from changing the autoencoder that is checkpointed and compared.
    Unlike the seed, the head sits on the code (not the reconstruction) and trains with
    cross-entropy (not MSE on one-hot labels).
    """

    def __init__(self, autoencoder: AutoEncoder, num_classes: int = 10) -> None:
        super().__init__()
        self.autoencoder = copy.deepcopy(autoencoder)
        self.head = nn.Linear(autoencoder.code_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.head(self.autoencoder.encode(x))
