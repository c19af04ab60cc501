"""The seed's variational autoencoder (Kingma & Welling 2014)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from models.base import PIXELS, AEOutput, AutoEncoder, ModelConfig, activation
from models.errors import ConfigError


@dataclass
class VAEConfig(ModelConfig):
    """Seed VAE: 784 -> 512 (relu) -> μ, log σ²; 2 -> 512 (relu) -> 784 (sigmoid); BCE + KL."""

    recon_loss: str = "bce"
    hidden: tuple[int, ...] = (512,)
    beta: float = 1.0

    def validate(self) -> None:
        super().validate()
        if any(int(h) < 1 for h in self.hidden):
            raise ConfigError(f"hidden sizes must be >= 1, got {list(self.hidden)}")
        if float(self.beta) < 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}")


class VariationalAutoEncoder(AutoEncoder):
    """VAE (`vae`): loss = mean over the batch of (reconstruction summed over pixels + β·KL).

    That is the seed's mean(784·recon + KL), so its numbers (145 for BCE) are on the same scale.
    """

    config_class = VAEConfig
    name = "vae"

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)
        act = config.activation
        widths = [PIXELS, *config.hidden]
        enc: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            enc += [nn.Linear(a, b), activation(act)]
        self.body = nn.Sequential(*enc)
        self.mu = nn.Linear(widths[-1], config.latent_dim)
        self.logvar = nn.Linear(widths[-1], config.latent_dim)
        back = [config.latent_dim, *config.hidden[::-1]]
        dec: list[nn.Module] = []
        for a, b in itertools.pairwise(back):
            dec += [nn.Linear(a, b), activation(act)]
        self.decoder = nn.Sequential(*dec, nn.Linear(back[-1], PIXELS), nn.Sigmoid())

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ and log σ² of q(z|x)."""
        h = self.body(x.reshape(x.shape[0], -1))
        return self.mu(h), self.logvar(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).reshape(z.shape[0], 1, 28, 28)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode `n` draws from the prior N(0, I)."""
        device = self.mu.weight.device
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=device)
        return self.decode(z)

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> AEOutput:
        target = x if target is None else target
        mu, logvar = self.posterior(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # reparameterisation trick
        recon = self.decode(z)
        recon_sum = summed_recon_loss(recon, target, self.config.recon_loss).mean()
        kl = kl_divergence(mu, logvar).mean()
        loss = recon_sum + self.config.beta * kl
        return AEOutput(loss=loss, recon_loss=recon_sum, reg_loss=kl, recon=recon, z=mu)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per sample."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def summed_recon_loss(recon: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Reconstruction loss summed over pixels, per sample."""
    fn = F.mse_loss if kind == "mse" else F.binary_cross_entropy
    return fn(recon, target, reduction="none").flatten(1).sum(dim=1)
