"""Input corruption for the denoising models."""

from __future__ import annotations

import torch

from models.errors import ConfigError

# Allowed level per kind: gaussian is the seed's factor in x + level·N(0, 1); masking and
# salt_and_pepper are the fraction of pixels corrupted.
NOISE_RANGES: dict[str, tuple[float, float]] = {
    "gaussian": (0.0, 2.0),
    "masking": (0.0, 1.0),
    "salt_and_pepper": (0.0, 1.0),
}


def validate_noise(kind: str, level: float) -> None:
    if kind not in NOISE_RANGES:
        raise ConfigError(f"noise_kind must be one of {', '.join(NOISE_RANGES)}; got {kind!r}")
    low, high = NOISE_RANGES[kind]
    if not low <= float(level) <= high:
        raise ConfigError(f"noise for {kind} must lie in [{low}, {high}]; got {level}")


def corrupt(
    x: torch.Tensor,
    kind: str,
    level: float,
    generator: torch.Generator | None = None,
    clip: bool = True,
) -> torch.Tensor:
    """Return a corrupted copy of `x`.

    `clip` keeps gaussian-noised pixels in [0, 1] as the seed did; it is off when corrupting hidden
    codes during layer-wise pretraining, whose values are not pixels.
    """
    if level == 0:
        return x
    if kind == "gaussian":
        noisy = x + level * torch.randn(
            x.shape, generator=generator, device=x.device, dtype=x.dtype
        )
        return noisy.clamp(0.0, 1.0) if clip else noisy
    hit = torch.rand(x.shape, generator=generator, device=x.device) < level
    if kind == "masking":
        return x.masked_fill(hit, 0.0)
    salt = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)
