"""Checkpoints: one directory holding weights, config and (optionally) the training state.

Layout:
    config.json      {"model": name, "model_config": {...}, "trial_config": {...}}
    model.pt         model state_dict
    training.pt      optimizer state, RNG states (only for resumable training checkpoints)
    state.json       epoch and metrics history (only for training checkpoints)

Everything is loaded with `torch.load(weights_only=True)`: no pickled code is ever executed.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from models.base import AutoEncoder
from models.errors import ConfigError
from models.registry import build_model, config_dict

CONFIG_FILE, WEIGHTS_FILE, TRAINING_FILE, STATE_FILE = (
    "config.json",
    "model.pt",
    "training.pt",
    "state.json",
)


def save(
    path: str | os.PathLike,
    model: AutoEncoder,
    *,
    trial_config: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
) -> Path:
    """Write `model` (and optionally the training state) to directory `path`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": model.name,
        "model_config": config_dict(model),
        "trial_config": trial_config or {},
    }
    torch.save(model.state_dict(), path / WEIGHTS_FILE)
    if training is not None:
        torch.save(training, path / TRAINING_FILE)
    if state is not None:
        (path / STATE_FILE).write_text(json.dumps(state, indent=2))
    # config.json last: its presence marks a complete checkpoint.
    (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
    return path


def check_out_folder(out: Path, force: bool) -> None:
    """Refuse to write into `out` if it is a file, or a folder holding anything (unless `force`):
    a checkpoint or export written over another would silently replace it."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        held = ", ".join(sorted(p.name for p in out.iterdir())[:5])
        raise ConfigError(
            f"--out {out} is not empty (holds {held}); choose an empty or new folder, or pass "
            "--force to replace what is there"
        )
    check_writable_folder(out)


def check_writable_folder(out: Path) -> None:
    """Refuse, before any work, a folder that cannot be made or written (a read-only disk,
    /proc): a folder is made, then removed, in the nearest one that exists."""
    nearest = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if not nearest.is_dir():
        raise ConfigError(f"--out {out}: {nearest} is a file; give a folder")
    try:
        tempfile.TemporaryDirectory(dir=nearest, prefix=".aestudy-probe-").cleanup()
    except OSError as exc:
        raise ConfigError(
            f"--out {out} cannot be written ({exc.strerror} in {nearest}); choose a folder you "
            "can write"
        ) from None


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's config.json."""
    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        raise ConfigError(f"{path} is not a checkpoint directory: {CONFIG_FILE} is missing")
    return _read_json(file)


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> AutoEncoder:
    """Load the model saved in `path`, in eval mode, on `device`."""
    meta = read_config(path)
    if not isinstance(meta, dict) or not {"model", "model_config"} <= set(meta):
        raise ConfigError(f"{Path(path) / CONFIG_FILE}: not a checkpoint's config (no model)")
    model = build_model(meta["model"], meta["model_config"])
    weights = _read_tensors(Path(path) / WEIGHTS_FILE, device)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"{Path(path) / WEIGHTS_FILE}: its weights do not fit the {meta['model']} that "
            f"{CONFIG_FILE} describes ({str(exc).splitlines()[0]})"
        ) from None
    return model.to(device).eval()


def load_training_state(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[dict, dict]:
    """The optimizer/RNG state and the epoch/history record of a training checkpoint."""
    path = Path(path)
    return _read_tensors(path / TRAINING_FILE, device), _read_json(path / STATE_FILE)


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"{file}: unreadable or not JSON ({exc}); the checkpoint is damaged"
        ) from None


def _read_tensors(file: Path, device: str | torch.device) -> Any:
    """torch.load with weights_only=True, its failures named by file and cause. torch's own
    message for a pickle naming code suggests `weights_only=False`, which must not be taken."""
    if not file.is_file():
        raise ConfigError(f"{file} is missing; the checkpoint is incomplete")
    if file.stat().st_size == 0:
        raise ConfigError(f"{file} is empty; the checkpoint is damaged (an interrupted write?)")
    try:
        return torch.load(file, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = str(exc).split("Weights only load failed", 1)[-1].strip(" .").splitlines()
        detail = next((x.strip(" .") for x in lines if "GLOBAL" in x or "Unsupported" in x), "")
        raise ConfigError(
            f"{file} is not a plain-weights torch file (the safe loader refused it: "
            f"{detail or 'unpickling error'}): it is damaged, or it holds pickled code, which "
            "this tool never runs; do not retry with weights_only=False unless you trust "
            "whoever wrote it"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ConfigError(
            f"{file}: not a readable torch file ({type(exc).__name__}: {exc}); the checkpoint "
            "is damaged"
        ) from None
