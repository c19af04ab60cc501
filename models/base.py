"""What every autoencoder shares: the forward record, activations, noise, and the base class.

One trainer serves all five models because each returns the same `AEOutput` from `forward`
(the pythae pattern): the loss to minimise, its parts, the reconstruction and the code.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from models.errors import ConfigError, did_you_mean

PIXELS = 28 * 28
IMAGE_SHAPE = (1, 28, 28)

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "linear": nn.Identity,
}

# Output activations and whether their range lies inside [0, 1]; BCE needs that.
OUTPUT_ACTIVATIONS: dict[str, bool] = {
    "sigmoid": True,
    "relu": False,
    "tanh": False,
    "linear": False,
}

RECON_LOSSES = ("mse", "bce")


@dataclass
class AEOutput:
    """The record every model's forward returns."""

    loss: torch.Tensor  # scalar to minimise
    recon_loss: torch.Tensor  # reconstruction part of the loss
    reg_loss: torch.Tensor  # unweighted regulariser (KL for the VAE, 0 otherwise)
    recon: torch.Tensor  # (N, 1, 28, 28)
    z: torch.Tensor  # (N, code_dim)


@dataclass
class ModelConfig:
    """Fields every model has. Subclasses add only their own."""

    latent_dim: int = 2
    activation: str = "relu"
    recon_loss: str = "mse"

    def validate(self) -> None:
        """Raise ConfigError naming the bad field and what is allowed."""
        check_latent(self.latent_dim)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_choice("recon_loss", self.recon_loss, RECON_LOSSES)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def check_latent(latent_dim: int | None) -> None:
    """A code of at least one number and narrower than the image: one as wide as its 784 pixels
    compresses nothing (and a huge one would ask for gigabytes)."""
    if latent_dim is not None and not 1 <= latent_dim < PIXELS:
        raise ConfigError(
            f"latent_dim must lie in [1, {PIXELS - 1}] (narrower than the image's {PIXELS} "
            f"pixels, or nothing is compressed), got {latent_dim}"
        )


def check_choice(name: str, value: object, allowed) -> None:
    if value not in allowed:
        raise ConfigError(
            f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}"
            + did_you_mean(value, allowed)
        )


def check_bottleneck(latent_dim: int, hidden: tuple[int, ...]) -> None:
    """The code must be the narrowest layer: a hidden layer narrower than `latent_dim` would be
    the real bottleneck, and a study's `latent_dim` axis would be fiction."""
    if hidden and min(hidden) < latent_dim:
        raise ConfigError(
            f"latent_dim {latent_dim} is wider than the hidden layer of {min(hidden)} in hidden "
            f"{list(hidden)}, which would be the real bottleneck: choose latent_dim <= "
            f"{min(hidden)} or wider hidden layers"
        )


def check_output_for_loss(output_activation: str, recon_loss: str) -> None:
    check_choice("output_activation", output_activation, OUTPUT_ACTIVATIONS)
    if recon_loss == "bce" and not OUTPUT_ACTIVATIONS[output_activation]:
        raise ConfigError(
            f"recon_loss 'bce' needs outputs in [0, 1], but output_activation is "
            f"{output_activation!r}: use output_activation 'sigmoid' or recon_loss 'mse'"
        )


def activation(name: str) -> nn.Module:
    """A new activation layer, for building a model."""
    return ACTIVATIONS[name]()


@cache
def apply_activation(name: str) -> nn.Module:
    """One shared, stateless instance per activation, for applying it outside a model's layers
    (the output activation): making a module per call cost ~5% of a small MLP's training step."""
    return ACTIVATIONS[name]()


def reconstruction_loss(
    logits: torch.Tensor, target: torch.Tensor, kind: str, output: str, reduction: str = "mean"
) -> torch.Tensor:
    """Reconstruction loss of the decoder's pre-activation outputs `logits` against `target`, as
    Keras computes `mse` / `binary_crossentropy` (per-pixel mean, or per element with
    reduction="none"). BCE works on the logits of the sigmoid output (`output` must be sigmoid,
    which the configs check): stable where the sigmoid saturates, and never an error when the
    outputs are not finite, so a diverging trial is caught by its loss's value."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target, reduction=reduction)
    return F.mse_loss(apply_activation(output)(logits), target, reduction=reduction)


def to_image(logits: torch.Tensor, output: str) -> torch.Tensor:
    """The decoder's outputs as an image: the output activation, then clipped into [0, 1].

    The seed's relu and tanh output layers train as the seed defined them (the loss sees the
    activation's raw range), but a reconstruction is an image: pixels below 0 or above 1 are
    not pixels, and metrics, pictures and exported models compare images. Clipping is a no-op
    for a sigmoid output."""
    return apply_activation(output)(logits).clamp(0.0, 1.0)


class AutoEncoder(nn.Module):
    """Base class: subclasses define `encode` and `decode_logits` and may override `forward`
    and the hooks below."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    name: ClassVar[str] = ""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 1, 28, 28) in [0, 1] -> codes (N, code_dim)."""
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (N, code_dim) -> the decoder's outputs before its output activation, (N, 1, 28, 28)."""
        raise NotImplementedError

    @property
    def output_activation(self) -> str:
        """The decoder's output activation (a key of ACTIVATIONS)."""
        return "sigmoid"

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes (N, code_dim) -> images (N, 1, 28, 28) in the image range [0, 1]."""
        return to_image(self.decode_logits(z), self.output_activation)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction (the VAE uses the mean of q(z|x))."""
        return self.decode(self.encode(x))

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The input corruption this model trains with; identity for non-denoising models."""
        return x

    def forward(
        self,
        x: torch.Tensor,
        target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> AEOutput:
        """Reconstruct `x` (possibly corrupted) and score it against `target` (the clean image).

        `generator` serves any random draw the forward pass makes (the VAE's sampling): training
        passes the trial's generator, so a resumed trial draws what an uninterrupted one would.
        """
        target = x if target is None else target
        z = self.encode(x)
        logits = self.decode_logits(z)
        loss = reconstruction_loss(logits, target, self.config.recon_loss, self.output_activation)
        recon = to_image(logits.detach(), self.output_activation)
        return AEOutput(
            loss=loss, recon_loss=loss, reg_loss=torch.zeros_like(loss), recon=recon, z=z
        )

    # Hooks for what sets one model apart; generic code (trainer, evaluation, pictures) calls them
    # instead of asking which model it holds.

    def pretrain_stages(self) -> list[nn.Module]:
        """Greedy layer-wise pretraining stages the trainer fits, in order, before end-to-end
        training. Each stage has `inputs(x)`, `corrupt(h, generator)`, `forward(noisy, clean)`
        (an AEOutput), `trainable_parameters()` and `epochs`."""
        return []

    def extra_metrics(self, x: torch.Tensor, noise: torch.Generator) -> dict[str, float]:
        """Model-specific held-out metrics on clean digits `x`; `noise` is a CPU generator with a
        fixed seed, so every device scores on the same draws."""
        return {}

    def extra_pictures(self, noise: torch.Generator) -> dict[str, tuple[torch.Tensor, int]]:
        """Model-specific pictures: name -> (images (N, 1, 28, 28), columns of the mosaic)."""
        return {}

    @property
    def code_dim(self) -> int:
        with torch.no_grad():
            dummy = torch.zeros(1, *IMAGE_SHAPE, device=next(self.parameters()).device)
            return int(self.encode(dummy).shape[1])

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
