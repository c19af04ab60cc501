"""The seed report's pictures, drawn for any trial from its model and held-out digits."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on workers
import matplotlib.pyplot as plt
import numpy as np
import torch

from models import AutoEncoder
from models.vae import VariationalAutoEncoder
from study.evaluate import noisy_copy

N_DIGITS = 10
GRID, GRID_RANGE = 30, 4.0  # the seed's 30×30 manifold over [-4, 4]²


def first_of_each_class(y: torch.Tensor) -> torch.Tensor:
    """Indices of one held-out digit per class, 0 to 9 (the same for every trial)."""
    return torch.stack([torch.nonzero(y == c)[0, 0] for c in range(N_DIGITS)])


def _rows(path: Path, rows: list[torch.Tensor], titles: list[str]) -> Path:
    fig, axes = plt.subplots(len(rows), N_DIGITS, figsize=(N_DIGITS, 1.1 * len(rows)))
    for r, (images, title) in enumerate(zip(rows, titles, strict=True)):
        for c in range(N_DIGITS):
            ax = axes[r, c]
            ax.imshow(images[c, 0].clamp(0, 1).cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


@torch.no_grad()
def reconstructions(
    model: AutoEncoder, x: torch.Tensor, y: torch.Tensor, folder: Path
) -> list[Path]:
    """10 held-out digits over their reconstructions; their noisy copies over the denoised ones."""
    idx = first_of_each_class(y)
    digits = x[idx]
    noisy = noisy_copy(x)[idx]
    return [
        _rows(
            folder / "reconstructions.png",
            [digits, model.reconstruct(digits)],
            ["held out", "reconstructed"],
        ),
        _rows(
            folder / "denoising.png", [noisy, model.reconstruct(noisy)], ["noisy (0.5)", "denoised"]
        ),
    ]


@torch.no_grad()
def latent_scatter(model: AutoEncoder, x: torch.Tensor, y: torch.Tensor, folder: Path) -> Path:
    """The held-out codes in 2-D, coloured by digit (PCA when the code is wider than 2)."""
    z = torch.cat([model.encode(x[i : i + 1000]) for i in range(0, len(x), 1000)]).cpu().numpy()
    title = "latent code"
    if z.shape[1] > 2:
        z = z - z.mean(0)
        _, _, vt = np.linalg.svd(z, full_matrices=False)
        z, title = z @ vt[:2].T, f"latent code (PCA of {vt.shape[1]} dims)"
    elif z.shape[1] == 1:
        z, title = np.hstack([z, np.zeros_like(z)]), "latent code (1 dim)"
    fig, ax = plt.subplots(figsize=(6, 5))
    points = ax.scatter(z[:, 0], z[:, 1], c=y.cpu().numpy(), cmap="tab10", s=6)
    fig.colorbar(points, ax=ax, ticks=range(10))
    ax.set_title(title)
    fig.tight_layout()
    path = folder / "latent.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


@torch.no_grad()
def vae_pictures(model: VariationalAutoEncoder, folder: Path, seed: int = 0) -> list[Path]:
    """Digits decoded over a 30×30 grid of the latent plane, and 100 samples from the prior.

    Wider codes vary the first two dimensions and hold the others at 0.
    """
    device = model.mu.weight.device
    ticks = torch.linspace(-GRID_RANGE, GRID_RANGE, GRID, device=device)
    z = torch.zeros(GRID * GRID, model.config.latent_dim, device=device)
    z[:, 0] = ticks.repeat(GRID)
    if model.config.latent_dim > 1:
        z[:, 1] = ticks.flip(0).repeat_interleave(GRID)
    grid = (
        model.decode(z)
        .reshape(GRID, GRID, 28, 28)
        .permute(0, 2, 1, 3)
        .reshape(GRID * 28, GRID * 28)
    )
    samples = model.sample(100, torch.Generator(device=device).manual_seed(seed))
    samples = samples.reshape(10, 10, 28, 28).permute(0, 2, 1, 3).reshape(280, 280)
    paths = []
    for name, image, size in (("latent_grid.png", grid, 10), ("prior_samples.png", samples, 5)):
        fig, ax = plt.subplots(figsize=(size, size))
        ax.imshow(image.cpu().numpy(), cmap="gray")
        ax.axis("off")
        fig.tight_layout()
        fig.savefig(folder / name, dpi=80)
        plt.close(fig)
        paths.append(folder / name)
    return paths


def loss_curves(history: list[dict[str, float]], folder: Path) -> Path:
    """Training loss and held-out errors per epoch."""
    epochs = [m["epoch"] for m in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [m["train_loss"] for m in history], marker="o")
    left.set(xlabel="epoch", ylabel="training loss", title="training loss")
    for key in ("val_mse", "denoise_mse"):
        right.plot(epochs, [m[key] for m in history], marker="o", label=key)
    right.set(xlabel="epoch", ylabel="per-pixel MSE", title="held-out error")
    right.legend()
    fig.tight_layout()
    path = folder / "loss_curves.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def trial_pictures(
    model: AutoEncoder,
    x: torch.Tensor,
    y: torch.Tensor,
    history: list[dict[str, float]],
    folder: Path,
) -> list[Path]:
    """Every picture a trial logs, written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    paths = [
        *reconstructions(model, x, y, folder),
        latent_scatter(model, x, y, folder),
        loss_curves(history, folder),
    ]
    if isinstance(model, VariationalAutoEncoder):
        paths += vae_pictures(model, folder)
    return paths
