"""Held-out metrics, computed the same way for every model whatever its training loss."""

from __future__ import annotations

import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch.nn import functional as F

from models import AutoEncoder
from models.noise import corrupt
from models.vae import VariationalAutoEncoder, kl_divergence, summed_recon_loss

EVAL_BATCH = 1000
EVAL_SEED = 1234  # fixed: every model and epoch is scored on the same noisy copies
DENOISE_KIND, DENOISE_LEVEL = "gaussian", 0.5  # the seed's corruption
PROBE_MAX_TRAIN = 5000  # keeps the probe's fit well under a second on full MNIST
BCE_EPS = 1e-6


def noisy_copy(x: torch.Tensor) -> torch.Tensor:
    """The fixed noisy version of `x` that `denoise_mse` is measured on."""
    gen = torch.Generator(device=x.device).manual_seed(EVAL_SEED)
    return corrupt(x, DENOISE_KIND, DENOISE_LEVEL, gen)


@torch.no_grad()
def _batched(fn, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])


@torch.no_grad()
def reconstruction_metrics(
    model: AutoEncoder, x: torch.Tensor, x_noisy: torch.Tensor, prefix: str = "val_"
) -> dict[str, float]:
    """Per-pixel MSE and BCE of clean digits, and MSE of the reconstruction of their noisy copies."""
    recon = _batched(model.reconstruct, x)
    denoised = _batched(model.reconstruct, x_noisy)
    bce = F.binary_cross_entropy(recon.clamp(BCE_EPS, 1 - BCE_EPS), x)
    denoise_name = "denoise_mse" if prefix == "val_" else f"{prefix}denoise_mse"
    return {
        f"{prefix}mse": F.mse_loss(recon, x).item(),
        f"{prefix}bce": bce.item(),
        denoise_name: F.mse_loss(denoised, x).item(),
    }


@torch.no_grad()
def probe_accuracy(
    model: AutoEncoder,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    eval_x: torch.Tensor,
    eval_y: torch.Tensor,
) -> float:
    """Accuracy on `eval_*` of a logistic regression fitted on frozen codes of `train_*`."""
    n = min(len(train_x), PROBE_MAX_TRAIN)
    train_codes = _batched(model.encode, train_x[:n]).cpu().numpy()
    eval_codes = _batched(model.encode, eval_x).cpu().numpy()
    scaler = StandardScaler().fit(train_codes)
    probe = LogisticRegression(max_iter=500)
    probe.fit(scaler.transform(train_codes), train_y[:n].cpu().numpy())
    return float(probe.score(scaler.transform(eval_codes), eval_y.cpu().numpy()))


@torch.no_grad()
def vae_metrics(model: VariationalAutoEncoder, x: torch.Tensor) -> dict[str, float]:
    """Mean KL and ELBO per digit (one posterior sample, fixed noise); ELBO uses β = 1."""
    gen = torch.Generator(device=x.device).manual_seed(EVAL_SEED)
    kls, recons = [], []
    for i in range(0, len(x), EVAL_BATCH):
        xb = x[i : i + EVAL_BATCH]
        mu, logvar = model.posterior(xb)
        eps = torch.randn(mu.shape, generator=gen, device=mu.device)
        recon = model.decode(mu + torch.exp(0.5 * logvar) * eps)
        kls.append(kl_divergence(mu, logvar))
        recons.append(summed_recon_loss(recon, xb, model.config.recon_loss))
    kl, recon_sum = torch.cat(kls).mean().item(), torch.cat(recons).mean().item()
    return {"kl": kl, "elbo": -(recon_sum + kl)}
