"""Command line: `python -m study COMMAND`. Bad input ends with a one-line error and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from models import ConfigError

# Options of `train` that map one-to-one onto trial-config keys (None: not given, keep the default).
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m study", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_command(commands)
    return parser


def add_train_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train",
        help="train one model (no Ray), print metrics per epoch, save a checkpoint",
        description="Train one autoencoder on held-out-scored data. Last line: final metrics as JSON.",
    )
    for key, kind in TRAIN_OPTIONS.items():
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=kind, default=None)
    p.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other model parameter, e.g. --set hidden=[256,64] --set pretrain_epochs=3",
    )
    p.add_argument("--out", default=None, help="directory for the final checkpoint")
    p.set_defaults(handler=run_train)


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
    from study.config import split_config
    from study.trainer import TrainingDiverged, train

    config = {k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None}
    config = {**config, **parse_assignments(args.extra)}
    split_config(config)  # every bad option fails here, before any data is loaded
    try:
        history = train(config, on_epoch=print_epoch(), out_dir=args.out)
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.out:
        print(f"checkpoint: {args.out}  (load with models.load({args.out!r}))")
    print(json.dumps(history[-1], sort_keys=True))
    return 0


def print_epoch() -> Callable[[dict[str, float], Any], None]:
    keys = ("train_loss", "val_mse", "val_bce", "denoise_mse", "probe_acc", "kl", "elbo")

    def show(metrics: dict[str, float], _save: Any) -> None:
        shown = "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)
        print(
            f"epoch {metrics['epoch']:>3}  {shown}  ({metrics['epoch_seconds']:.1f}s)", flush=True
        )

    return show
