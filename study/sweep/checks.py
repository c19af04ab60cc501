"""What a sweep is refused for before any work, from its options alone: a name that is not one
safe path segment, a storage folder this user cannot write, a length of days unless asked."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from models import ConfigError

if TYPE_CHECKING:
    from study.sweep.launch import SweepOptions
    from study.sweep.space import Space


# Seconds of one epoch on mnist-5k's 4,000 training digits, 2 CPU cores (docs/performance.md,
# "The family at the seed's settings"), rounded up: the base of a sweep's rough estimate.
EPOCH_SECONDS = {"ae": 0.1, "dae": 0.3, "sdae": 0.3, "cae": 2.0, "vae": 0.6}
TRAINING_DIGITS = {"mnist-5k": 4_000, "mnist": 55_000, "fashion-mnist": 55_000}
LONG_HOURS = 24.0


def estimated_hours(space: Space, options: SweepOptions) -> float:
    """A rough upper estimate of a sweep's length: every trial its full epochs, at the slowest
    model's pace on 2 CPU cores, spread over the lanes."""
    models_ = next((p.values for p in space.params if p.name == "model"), None) or [
        space.fixed.get("model", "ae")
    ]
    per_epoch = max(EPOCH_SECONDS.get(str(m), 2.0) for m in models_)
    per_epoch *= TRAINING_DIGITS.get(space.dataset, 55_000) / TRAINING_DIGITS["mnist-5k"]
    lanes = options.max_concurrent or max(1, int((os.cpu_count() or 1) / options.cpus_per_trial))
    trials = options.num_samples or space.num_samples
    if space.algorithm == "grid":
        trials = len(space.grid())
    return trials * space.max_epochs * per_epoch / lanes / 3600


def check_duration(space: Space, options: SweepOptions) -> None:
    """Refuse, before anything runs, a sweep estimated to run for days, unless --long."""
    hours = estimated_hours(space, options)
    if hours > LONG_HOURS and not options.long:
        trials = options.num_samples or space.num_samples
        raise ConfigError(
            f"this sweep may run for about {hours:,.0f} hours ({trials:,} trials × up to "
            f"{space.max_epochs:,} epochs on {space.dataset}, at 2-CPU speed): check num_samples "
            "and epochs, or pass --long to go ahead"
        )


def check_writable(storage: Path) -> None:
    """The storage folder exists or can be made, and this user can write in it."""
    from study.sweep.disk import nearest_existing  # with Ray: only a launch checks this

    existing = nearest_existing(storage)
    if not existing.is_dir():
        raise ConfigError(f"--storage {storage}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK) or str(existing).startswith(("/proc", "/sys")):
        raise ConfigError(
            f"--storage {storage}: {existing} is not writable by this user; give a folder you "
            "can write (on a cluster, one every node mounts)"
        )


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_name(name: str) -> None:
    """A study name is one safe path segment: it names a folder and an MLflow experiment."""
    if not NAME.fullmatch(name):
        raise ConfigError(
            f"study name {name!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
