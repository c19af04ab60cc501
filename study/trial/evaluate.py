"""Held-out metrics, computed the same way for every model whatever its training loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from models import AutoEncoder
from models.noise import corrupt

# Measured on 2 CPU cores: the CAE's forward pass over 1,000 digits takes 0.45 s in one batch
# and 0.22 s in batches of 256 (the activations of a big batch spill the cache).
EVAL_BATCH = 256
EVAL_SEED = 1234  # fixed: every model and epoch is scored on the same noisy copies
DENOISE_KIND, DENOISE_LEVEL = "gaussian", 0.5  # the seed's corruption
# The probe fits on every k-th training digit, about PROBE_TRAIN of them: a fixed subset, the
# same for every trial, spread over the whole split (mnist-5k's digits are sorted by class).
PROBE_TRAIN = 2000
PROBE_L2 = 1.0  # sklearn LogisticRegression's default strength (C=1): the usual linear probe
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


@dataclass(frozen=True)
class PCA:
    """Principal components of the training digits, every one, strongest first: the linear
    baseline for any code size k (its first k components) from one decomposition."""

    mean: torch.Tensor  # (1, 784)
    components: torch.Tensor  # (784, 784), columns strongest first

    @classmethod
    @torch.no_grad()
    def fit(cls, train_x: torch.Tensor) -> PCA:
        """Fitted by an eigendecomposition of the covariance in float64: deterministic, and
        784 × 784 whatever the number of digits."""
        flat = train_x.reshape(len(train_x), -1).double()
        mean = flat.mean(0, keepdim=True)
        centred = flat - mean
        _, vectors = torch.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
        return cls(mean.float(), vectors.flip(1).float())

    @torch.no_grad()
    def mse(self, x: torch.Tensor, k: int) -> float:
        """Per-pixel MSE of `x` projected on the first `k` components and back, clipped into
        [0, 1] like every model's reconstruction."""
        flat = x.reshape(len(x), -1)
        basis = self.components[:, : max(0, min(k, self.components.shape[1]))]
        recon = ((flat - self.mean) @ basis @ basis.T + self.mean).clamp(0.0, 1.0)
        return F.mse_loss(recon, flat).item()


@torch.no_grad()
def _batched(fn, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])


def pixel_bce(recon: torch.Tensor, x: torch.Tensor) -> float:
    """Mean per-pixel binary cross-entropy of `recon` (clamped to [BCE_EPS, 1 - BCE_EPS]) against
    `x` in [0, 1]: what `F.binary_cross_entropy` computes, written out because on a CPU its kernel
    took 19 ms for 1,000 digits, this 4 ms — most of a small model's per-epoch evaluation."""
    p = recon.clamp(BCE_EPS, 1 - BCE_EPS)
    # x * log(p) + (1 - x) * log(1 - p), as one lerp between the two logs. In place on the two
    # fresh tensors: two 3 MB allocations instead of five, ~10% faster, the same value.
    log_q = p.neg().log1p_()
    return -log_q.lerp_(p.log_(), x).mean().item()


@torch.no_grad()
def reconstruction_metrics(
    model: AutoEncoder, x: torch.Tensor, x_noisy: torch.Tensor | None, prefix: str = "val_"
) -> dict[str, float]:
    """Per-pixel MSE and BCE of clean digits, and (unless `x_noisy` is None) MSE of the
    reconstruction of their noisy copies."""
    recon = _batched(model.reconstruct, x)
    metrics = {f"{prefix}mse": F.mse_loss(recon, x).item(), f"{prefix}bce": pixel_bce(recon, x)}
    if x_noisy is not None:
        denoised = _batched(model.reconstruct, x_noisy)
        denoise_name = "denoise_mse" if prefix == "val_" else f"{prefix}denoise_mse"
        metrics[denoise_name] = F.mse_loss(denoised, x).item()
    return metrics


@dataclass(frozen=True)
class Probe:
    """A softmax regression on a model's standardised codes: fitted once on the training
    digits, it scores any held-out split (val, and test after the last epoch)."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    @torch.no_grad()
    def accuracy(self, model: AutoEncoder, x: torch.Tensor, y: torch.Tensor) -> float:
        """Share of `x` whose label the probe predicts from `model`'s codes."""
        codes = (_batched(model.encode, x).float() - self.mean) / self.std
        return ((codes @ self.weight + self.bias).argmax(1) == y).float().mean().item()


@torch.no_grad()
def fit_probe(model: AutoEncoder, train_x: torch.Tensor, train_y: torch.Tensor) -> Probe:
    """A softmax (multinomial logistic) regression fitted on frozen, standardised codes of a
    fixed subset of `train_*` (see PROBE_TRAIN).

    Fitted in torch on the model's device by full-batch L-BFGS, with sklearn's default L2
    penalty: no copy to the host and no second library. 50 L-BFGS iterations land within 0.003
    of the converged accuracy (measured here on ae/vae codes of 16 and 32 dimensions).
    """
    step = max(1, -(-len(train_x) // PROBE_TRAIN))
    codes = _batched(model.encode, train_x[::step]).float()
    mean, std = codes.mean(0), codes.std(0).clamp_min(1e-6)
    weight, bias = fit_softmax((codes - mean) / std, train_y[::step], int(train_y.max()) + 1)
    return Probe(mean, std, weight, bias)


def fit_softmax(
    x: torch.Tensor, y: torch.Tensor, classes: int, steps: int = 50
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias minimising mean cross-entropy + PROBE_L2 / (2 n) * |weights|^2 (the
    objective of sklearn's LogisticRegression(C=1) divided by n). Deterministic: no random draw."""
    weight = torch.zeros(x.shape[1], classes, device=x.device)
    bias = torch.zeros(classes, device=x.device)
    # It stops once an iteration moves the loss (~0.5-2.3) by under 1e-5: on codes of five trained
    # models that gave the accuracies of running to 1e-9 (within 0.001) in ~30% fewer evaluations.
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        max_iter=steps,
        tolerance_grad=1e-6,
        tolerance_change=1e-5,
        line_search_fn="strong_wolfe",
    )
    onehot = F.one_hot(y, classes).to(x.dtype)

    def closure() -> torch.Tensor:
        loss, weight.grad, bias.grad = softmax_objective(x, onehot, weight, bias)
        return loss

    optimizer.step(closure)
    return weight, bias


def softmax_objective(
    x: torch.Tensor, onehot: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`fit_softmax`'s objective and its gradients in weight and bias, written out (softmax minus
    one-hot) rather than by autograd: on one CPU core the probe's fit on 2,000 codes of 16
    dimensions took 30 ms instead of 38, and the probe is most of a short AE trial's evaluation."""
    n, l2 = len(x), PROBE_L2 / len(x)
    logits = torch.addmm(bias, x, weight)
    log_norm = logits.logsumexp(1, keepdim=True)
    loss = (log_norm.sum() - (logits * onehot).sum()) / n + l2 / 2 * weight.pow(2).sum()
    residual = (logits - log_norm).exp_().sub_(onehot).div_(n)  # d loss / d logits
    return loss, torch.addmm(weight, x.T, residual, beta=l2), residual.sum(0)
