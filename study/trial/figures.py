"""The seed report's pictures, drawn for any trial from its model and held-out digits."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on workers
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from models import AutoEncoder
from study.trial.evaluate import eval_noise, noisy_copy

N_DIGITS = 10


def first_of_each_class(y: torch.Tensor) -> torch.Tensor:
    """Indices of one held-out digit per class, 0 to 9 (the same for every trial)."""
    return torch.stack([torch.nonzero(y == c)[0, 0] for c in range(N_DIGITS)])


def mosaic(images: torch.Tensor, columns: int, path: Path, scale: int = 2, gap: int = 2) -> Path:
    """Save (N, 1, 28, 28) images as one grey PNG grid, `columns` wide. Plain numpy and Pillow:
    a matplotlib figure of 20 subplots costs about a second, and trials draw these often."""
    images = images.clamp(0, 1).cpu().numpy()[:, 0]
    rows = -(-len(images) // columns)
    cell = 28 + gap
    canvas = np.ones((rows * cell + gap, columns * cell + gap), dtype=np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[gap + r * cell : gap + r * cell + 28, gap + c * cell : gap + c * cell + 28] = image
    canvas = np.kron(canvas, np.ones((scale, scale), dtype=np.float32))
    Image.fromarray((canvas * 255).astype(np.uint8), mode="L").save(path)
    return path


@torch.no_grad()
def reconstructions(
    model: AutoEncoder, x: torch.Tensor, y: torch.Tensor, folder: Path
) -> list[Path]:
    """10 held-out digits (top row) over their reconstructions; their noisy copies over the denoised ones."""
    idx = first_of_each_class(y)
    digits = x[idx]
    noisy = noisy_copy(x)[idx]
    return [
        mosaic(
            torch.cat([digits, model.reconstruct(digits)]), N_DIGITS, folder / "reconstructions.png"
        ),
        mosaic(torch.cat([noisy, model.reconstruct(noisy)]), N_DIGITS, folder / "denoising.png"),
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


def loss_curves(history: list[dict[str, float]], folder: Path) -> Path:
    """Training loss and held-out errors per epoch."""
    epochs = [m["epoch"] for m in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(epochs, [m["train_loss"] for m in history], marker="o")
    left.set(xlabel="epoch", ylabel="training loss", title="training loss")
    for key in ("val_mse", "denoise_mse"):  # denoise_mse: only where it was measured
        measured = [(m["epoch"], m[key]) for m in history if key in m]
        right.plot(*zip(*measured, strict=True), marker="o", label=key)
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
    with torch.no_grad():
        for name, (images, columns) in model.extra_pictures(eval_noise()).items():
            large = len(images) > 200  # a dense grid: one pixel per pixel, no gaps
            paths.append(
                mosaic(images, columns, folder / f"{name}.png", *((1, 0) if large else ()))
            )
    return paths
