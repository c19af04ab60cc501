"""`python -m study train`: one model, no Ray; metrics per epoch, a checkpoint at the end."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from models import ConfigError
from study.trial.config import TRAIN_OPTIONS


def add_train_command(commands: argparse._SubParsersAction, details: bool = True) -> None:
    """The `train` command; without `details`, its options' help does not list their values
    (listing them imports the models, and so torch: the read-only views start without it)."""
    p = commands.add_parser(
        "train",
        help="train one model (no Ray), print metrics per epoch, save a checkpoint",
        description="Train one autoencoder on held-out-scored data. Last line: final metrics as JSON.",
    )
    for key, kind in TRAIN_OPTIONS.items():
        p.add_argument(
            f"--{key.replace('_', '-')}",
            dest=key,
            type=kind,
            default=None,
            help=train_option_help(key) if details else "a trial setting (see `train --help`)",
        )
    p.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other model parameter, e.g. --set hidden=[256,64] --set pretrain_epochs=3",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch's CPU threads (default: torch's own, one per core); a sweep's trial runs "
        "with one per CPU it is given, and `best` prints the number its winner had",
    )
    p.add_argument("--out", default=None, help="an empty or new folder for the final checkpoint")
    p.add_argument("--force", action="store_true", help="replace a checkpoint already in --out")
    p.set_defaults(handler=run_train)


def train_option_help(key: str) -> str:
    """Allowed values and the default of one `train` option, from the registries and configs.
    (Not argparse `choices`: a bad value gets the tool's one-line error with a suggestion.)"""
    from dataclasses import fields

    from models import MODELS
    from models.base import ACTIVATIONS, RECON_LOSSES
    from models.noise import NOISE_RANGES
    from study.trial.config import TrainSettings
    from study.trial.data import DATASETS

    choices = {
        "model": list(MODELS),
        "activation": list(ACTIVATIONS),
        "recon_loss": list(RECON_LOSSES),
        "noise_kind": list(NOISE_RANGES),
        "dataset": list(DATASETS),
    }.get(key)
    allowed = f"one of {', '.join(choices)}; " if choices else ""
    settings = {f.name: f.default for f in fields(TrainSettings)}
    if key in settings:
        return f"{allowed}default: {settings[key]}"
    per_model = ", ".join(
        f"{name} {getattr(cls.config_class(), key)}"
        for name, cls in MODELS.items()
        if key in cls.config_class.field_names()
    )
    return f"{allowed}default per model (the seed's): {per_model}"


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings to a dict; VALUE is read as YAML (numbers, lists, null)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def run_train(args: argparse.Namespace) -> int:
    from models.checkpoint import check_out_folder
    from study.trial.config import split_config
    from study.trial.trainer import TrainingDiverged, train

    config = {k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None}
    config = {**config, **parse_assignments(args.extra)}
    split_config(config)  # every bad option fails here, before any data is loaded
    if args.out:
        check_out_folder(Path(args.out), args.force)  # before any data is loaded too
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    try:
        history = train(config, on_epoch=print_epoch(), out_dir=args.out)
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.out:
        print(f"checkpoint: {args.out}  (load with models.load({args.out!r}))")
    else:
        print("checkpoint: not kept (pass --out FOLDER to keep it)")
    print(json.dumps(history[-1], sort_keys=True))
    return 0


def print_epoch() -> Callable[[dict[str, float], Any], None]:
    from study.trial.metrics import PRINTED as keys

    def show(metrics: dict[str, float], _save: Any) -> None:
        shown = "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)
        print(
            f"epoch {metrics['epoch']:>3}  {shown}  ({metrics['epoch_seconds']:.1f}s)", flush=True
        )

    return show
