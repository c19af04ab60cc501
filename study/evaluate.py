"""Held-out metrics, computed the same way for every model whatever its training loss."""

from __future__ import annotations

import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch.nn import functional as F

from models import AutoEncoder
from models.noise import corrupt

# Measured on 2 CPU cores: the CAE's forward pass over 1,000 digits takes 0.45 s in one batch
# and 0.22 s in batches of 256 (the activations of a big batch spill the cache).
EVAL_BATCH = 256
EVAL_SEED = 1234  # fixed: every model and epoch is scored on the same noisy copies
DENOISE_KIND, DENOISE_LEVEL = "gaussian", 0.5  # the seed's corruption
PROBE_MAX_TRAIN = 5000  # keeps the probe's fit well under a second on full MNIST
BCE_EPS = 1e-6


def eval_noise() -> torch.Generator:
    """A fresh CPU generator with the fixed evaluation seed. CPU and CUDA generators draw
    different numbers from one seed, so every evaluation draw is made on the CPU and moved:
    a GPU trial and a CPU trial of one study are scored on the same noisy digits."""
    return torch.Generator().manual_seed(EVAL_SEED)


def noisy_copy(x: torch.Tensor) -> torch.Tensor:
    """The fixed noisy version of `x` that `denoise_mse` is measured on (the same on any device)."""
    return corrupt(x.cpu(), DENOISE_KIND, DENOISE_LEVEL, eval_noise()).to(x.device)


def mean_digit_mse(train_x: torch.Tensor, val_x: torch.Tensor) -> float:
    """val_mse of predicting the mean training digit for every held-out digit: the trivial
    baseline a trial must beat to be more than degenerate."""
    return F.mse_loss(train_x.mean(0, keepdim=True).expand_as(val_x), val_x).item()


@torch.no_grad()
def _batched(fn, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])


@torch.no_grad()
def reconstruction_metrics(
    model: AutoEncoder, x: torch.Tensor, x_noisy: torch.Tensor | None, prefix: str = "val_"
) -> dict[str, float]:
    """Per-pixel MSE and BCE of clean digits, and (unless `x_noisy` is None) MSE of the
    reconstruction of their noisy copies."""
    recon = _batched(model.reconstruct, x)
    bce = F.binary_cross_entropy(recon.clamp(BCE_EPS, 1 - BCE_EPS), x)
    metrics = {f"{prefix}mse": F.mse_loss(recon, x).item(), f"{prefix}bce": bce.item()}
    if x_noisy is not None:
        denoised = _batched(model.reconstruct, x_noisy)
        denoise_name = "denoise_mse" if prefix == "val_" else f"{prefix}denoise_mse"
        metrics[denoise_name] = F.mse_loss(denoised, x).item()
    return metrics


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
