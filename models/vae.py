"""The seed's variational autoencoder (Kingma & Welling 2014)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from models.base import (
    PIXELS,
    AEOutput,
    AutoEncoder,
    ModelConfig,
    activation,
    check_bottleneck,
    reconstruction_loss,
)
from models.errors import ConfigError


@dataclass
class VAEConfig(ModelConfig):
    """Seed VAE: 784 -> 512 (relu) -> μ, log σ²; 2 -> 512 (relu) -> 784 (sigmoid); BCE + KL."""

    recon_loss: str = "bce"
    hidden: tuple[int, ...] = (512,)
    beta: float = 1.0

    def validate(self) -> None:
        super().validate()
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden sizes must be >= 1, got {list(self.hidden)}")
        check_bottleneck(self.latent_dim, self.hidden)
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}")


EVAL_BATCH = 1000
GRID, GRID_RANGE = 30, 4.0  # the seed's 30×30 manifold over [-4, 4]²


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
        # the sigmoid is `output_activation`, applied by `decode`; training uses the logits
        self.decoder = nn.Sequential(*dec, nn.Linear(back[-1], PIXELS), nn.Identity())

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ and log σ² of q(z|x)."""
        h = self.body(x.reshape(x.shape[0], -1))
        return self.mu(h), self.logvar(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).reshape(z.shape[0], 1, 28, 28)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode `n` draws from the prior N(0, I)."""
        device = self.mu.weight.device
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=device)
        return self.decode(z)

    def forward(
        self,
        x: torch.Tensor,
        target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> AEOutput:
        target = x if target is None else target
        mu, logvar = self.posterior(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        logits = self.decode_logits(mu + torch.exp(0.5 * logvar) * eps)  # reparameterisation
        recon_sum = summed_recon_loss(logits, target, self.config.recon_loss).mean()
        kl = kl_divergence(mu, logvar).mean()
        loss = recon_sum + self.config.beta * kl
        recon = torch.sigmoid(logits.detach())
        return AEOutput(loss=loss, recon_loss=recon_sum, reg_loss=kl, recon=recon, z=mu)

    @torch.no_grad()
    def extra_metrics(self, x: torch.Tensor, noise: torch.Generator) -> dict[str, float]:
        """Mean KL and reconstruction (summed over pixels) + KL per digit, one posterior sample
        per digit drawn on the CPU (the same draws on every device), β = 1."""
        mu, logvar = _batched_posterior(self, x)
        eps = torch.randn(mu.shape, generator=noise).to(mu.device)
        kl = kl_divergence(mu, logvar)
        recon = torch.cat(
            [
                summed_recon_loss(
                    self.decode_logits(m + torch.exp(0.5 * lv) * e), xb, self.config.recon_loss
                )
                for m, lv, e, xb in zip(
                    *(t.split(EVAL_BATCH) for t in (mu, logvar, eps, x)), strict=True
                )
            ]
        )
        return {"kl": kl.mean().item(), "recon_kl": (recon + kl).mean().item()}

    @torch.no_grad()
    def extra_pictures(self, noise: torch.Generator) -> dict[str, tuple[torch.Tensor, int]]:
        """100 digits decoded from prior draws; with a 2-D code, the seed's 30×30 grid of the
        latent plane over [-4, 4]² (rows from +4 down). A grid of two dimensions of a wider code
        shows near-identical digits, so it is drawn for 2-D codes only."""
        device = self.mu.weight.device
        z = torch.randn(100, self.config.latent_dim, generator=noise).to(device)
        pictures = {"prior_samples": (self.decode(z), 10)}
        if self.config.latent_dim == 2:
            ticks = torch.linspace(-GRID_RANGE, GRID_RANGE, GRID, device=device)
            plane = torch.stack([ticks.repeat(GRID), ticks.flip(0).repeat_interleave(GRID)], 1)
            pictures["latent_grid"] = (self.decode(plane), GRID)
        return pictures


def _batched_posterior(
    model: VariationalAutoEncoder, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [model.posterior(xb) for xb in x.split(EVAL_BATCH)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per sample."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def summed_recon_loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Reconstruction loss of the decoder's logits, summed over pixels, per sample."""
    loss = reconstruction_loss(logits, target, kind, "sigmoid", reduction="none")
    return loss.flatten(1).sum(dim=1)
