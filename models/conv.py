"""The seed's convolutional autoencoder, optionally denoising and with an optional dense bottleneck."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.base import AutoEncoder, ModelConfig, activation, check_choice, check_latent
from models.errors import ConfigError
from models.noise import corrupt, validate_noise

MAP_SIDE = 7  # two 2x2 poolings: 28 -> 14 -> 7


@dataclass
class CAEConfig(ModelConfig):
    """Seed CAE: Conv16-Pool-Conv8-Pool, mirrored with upsampling, sigmoid output, BCE.

    The seed's code is the 7×7×8 feature map (its Keras code pools 28 -> 14 -> 7). `latent_dim`
    adds a dense bottleneck of that width so the CAE sweeps on the same axis as the other models;
    None keeps the seed's map.
    """

    latent_dim: int | None = None
    recon_loss: str = "bce"
    channels: tuple[int, int] = (16, 8)
    noise_kind: str = "gaussian"
    noise: float = 0.0  # the seed never corrupted the CAE's input; > 0 makes it denoising

    def validate(self) -> None:
        check_latent(self.latent_dim)
        check_choice(
            "activation", self.activation, ("relu", "tanh", "sigmoid", "leaky_relu", "elu", "gelu")
        )
        check_choice("recon_loss", self.recon_loss, ("mse", "bce"))
        if len(self.channels) != 2 or any(c < 1 for c in self.channels):
            raise ConfigError(f"channels must be two widths >= 1, got {list(self.channels)}")
        flat = self.channels[1] * MAP_SIDE * MAP_SIDE
        if self.latent_dim is not None and self.latent_dim > flat:
            # as the MLPs refuse a code wider than a layer before it: the map is the bottleneck
            raise ConfigError(
                f"latent_dim {self.latent_dim} is wider than the CAE's {flat}-number feature map "
                f"({self.channels[1]}x{MAP_SIDE}x{MAP_SIDE}), which would be the real "
                f"bottleneck: choose latent_dim <= {flat} or more channels"
            )
        validate_noise(self.noise_kind, self.noise)


class ConvAutoEncoder(AutoEncoder):
    """Convolutional autoencoder (`cae`)."""

    config_class = CAEConfig
    name = "cae"

    def __init__(self, config: CAEConfig) -> None:
        super().__init__(config)
        c1, c2 = config.channels
        act = config.activation
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            activation(act),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            activation(act),
            nn.MaxPool2d(2),
        )
        self.map_shape = (c2, MAP_SIDE, MAP_SIDE)
        flat = c2 * MAP_SIDE * MAP_SIDE
        if config.latent_dim is None:
            self.to_code, self.from_code = nn.Identity(), nn.Identity()
        else:
            # Linear code (like the stacked DAE's) so the bottleneck can use the whole real line.
            self.to_code = nn.Linear(flat, config.latent_dim)
            self.from_code = nn.Sequential(nn.Linear(config.latent_dim, flat), activation(act))
        self.image = nn.Sequential(
            nn.Conv2d(c2, c2, 3, padding=1),
            activation(act),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(c2, c1, 3, padding=1),
            activation(act),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(c1, 1, 3, padding=1),
            nn.Identity(),  # the sigmoid: `output_activation`
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_code(self.features(x).flatten(1))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.image(self.from_code(z).reshape(z.shape[0], *self.map_shape))

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return corrupt(x, self.config.noise_kind, self.config.noise, generator)
