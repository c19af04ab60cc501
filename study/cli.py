"""Command line: `python -m study COMMAND`. Bad input ends with a one-line error and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from models import ConfigError

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT

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
    except KeyboardInterrupt:  # a second Ctrl-C: Tune's saved state stands, nothing was pruned
        name = getattr(args, "name", None)
        hint = f"; continue with `python -m study resume {name}`" if name else ""
        print(f"\ninterrupted{hint}", file=sys.stderr)
        return INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m study", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_command(commands)
    add_sweep_commands(commands)
    add_tracking_commands(commands)
    p = commands.add_parser(
        "cluster-check", help="validate cluster launcher configs offline (Ray's schema)"
    )
    p.add_argument("configs", nargs="+", help="e.g. cluster.yaml cluster-onprem.yaml")
    p.set_defaults(handler=run_cluster_check)

    from analysis.table import __doc__ as table_doc
    from analysis.table import add_arguments as table_arguments

    p = commands.add_parser(
        "table",
        help="the comparison table and plots of a study (reports/NAME/)",
        description=table_doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    table_arguments(p)
    p.set_defaults(handler=run_table)

    return parser


def add_train_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train",
        help="train one model (no Ray), print metrics per epoch, save a checkpoint",
        description="Train one autoencoder on held-out-scored data. Last line: final metrics as JSON.",
    )
    for key, kind in TRAIN_OPTIONS.items():
        p.add_argument(
            f"--{key.replace('_', '-')}", dest=key, type=kind, default=None,
            help=train_option_help(key),
        )  # fmt: skip
    p.add_argument(
        "--set",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other model parameter, e.g. --set hidden=[256,64] --set pretrain_epochs=3",
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
    from study.config import TrainSettings
    from study.data import DATASETS

    choices = {"model": list(MODELS), "activation": list(ACTIVATIONS), "recon_loss": list(RECON_LOSSES),
               "noise_kind": list(NOISE_RANGES), "dataset": list(DATASETS)}.get(key)  # fmt: skip
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
    from study.config import split_config
    from study.trainer import TrainingDiverged, train

    config = {k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k) is not None}
    config = {**config, **parse_assignments(args.extra)}
    split_config(config)  # every bad option fails here, before any data is loaded
    if args.out:
        check_out_folder(Path(args.out), args.force)  # before any data is loaded too
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
    from study.metrics import PRINTED as keys

    def show(metrics: dict[str, float], _save: Any) -> None:
        shown = "  ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)
        print(
            f"epoch {metrics['epoch']:>3}  {shown}  ({metrics['epoch_seconds']:.1f}s)", flush=True
        )

    return show


def add_sweep_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("sweep", help="run a study: Ray Tune + Optuna over a space file")
    p.add_argument("space", help="a search space file, e.g. search_spaces/quick.yaml")
    p.add_argument("--name", help="study name (default: the space file's name)")
    p.add_argument("--num-samples", type=int, help="number of trials (overrides the space)")
    p.add_argument(
        "--max-concurrent", type=int, help="trials running at once (default: as resources allow)"
    )
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument(
        "--gpus-per-trial", type=float, default=0.0, help="fractions pack trials on one GPU"
    )
    p.add_argument(
        "--max-failures",
        type=int,
        default=2,
        help="retries of a failing trial, from its checkpoint",
    )
    p.add_argument(
        "--address", help="join a Ray cluster ('auto' or host:port); default: start a local Ray"
    )
    p.add_argument("--storage", help=STORAGE_HELP + "; shared on a cluster")
    p.add_argument(
        "--tracking-uri",
        help="MLflow store: sqlite:///path/mlflow.db or http://host:port "
        "(default: $MLFLOW_TRACKING_URI, else $AESTUDY_HOME/mlflow.db, ~/.aestudy/mlflow.db)",
    )
    p.add_argument(
        "--dataset", help="override the space's data set (mnist-5k, mnist, fashion-mnist)"
    )
    p.add_argument(
        "--data-dir", help="folder of IDX files for mnist / fashion-mnist (shared on a cluster)"
    )
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    p.set_defaults(handler=run_sweep)

    p = commands.add_parser("resume", help="continue an interrupted study")
    p.add_argument("name")
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    p.set_defaults(handler=run_resume)

    p = commands.add_parser("status", help="a study's trials, ranked, with states and parameters")
    add_study_arguments(p)
    p.set_defaults(handler=run_status)

    p = commands.add_parser(
        "best", help="the best trial of each model type, with its train command"
    )
    add_study_arguments(p)
    p.add_argument("--model", help="only this model type")
    p.set_defaults(handler=run_best)

    p = commands.add_parser(
        "dashboard", help="optuna-dashboard on a study's Optuna search (127.0.0.1)"
    )
    p.add_argument("name")
    p.add_argument("--storage", help=STORAGE_HELP)
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(handler=run_dashboard)

    p = commands.add_parser("list", help="the studies in the tracking store")
    p.add_argument("--tracking-uri", help=TRACKING_HELP)
    p.set_defaults(handler=run_list)


VERBOSE_HELP = "let Ray Tune, MLflow and Optuna print their own messages too"
STORAGE_HELP = "folder that holds the study (default: $AESTUDY_HOME/studies, ~/.aestudy/studies)"
TRACKING_HELP = (
    "MLflow store: sqlite:///path/mlflow.db or http://host:port (default: the study's own, else "
    "$MLFLOW_TRACKING_URI, else $AESTUDY_HOME/mlflow.db)"
)


def add_study_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name")
    p.add_argument("--tracking-uri", help=TRACKING_HELP)
    p.add_argument("--storage", help=STORAGE_HELP)


def study_uri(args: argparse.Namespace) -> str:
    """--tracking-uri; else the store the study was launched with (its study.json); else the
    default store."""
    from study.sweep import STUDY_FILE, default_storage, study_dir
    from study.tracking import resolve_tracking_uri

    if args.tracking_uri:
        return resolve_tracking_uri(args.tracking_uri)
    saved = study_dir(args.storage or default_storage(), args.name) / STUDY_FILE
    if saved.is_file():
        return resolve_tracking_uri(json.loads(saved.read_text())["options"]["tracking_uri"])
    return resolve_tracking_uri(None)


def run_sweep(args: argparse.Namespace) -> int:
    from study.space import load_space
    from study.sweep import SweepOptions, launch

    quiet_libraries(args.verbose)
    data_dir = str(Path(args.data_dir).expanduser().resolve()) if args.data_dir else None
    # every problem in the file is reported before Ray starts
    space = load_space(args.space, {"dataset": args.dataset, "data_dir": data_dir})
    options = SweepOptions(
        name=args.name or Path(args.space).stem,
        storage=args.storage or "",
        num_samples=args.num_samples,
        max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_failures=args.max_failures,
        address=args.address,
        tracking_uri=args.tracking_uri,
    )
    print(f"study {options.name}: {space.description or space.path}", flush=True)
    outcome, wall = timed(launch, space, options)
    return summarise(options, outcome, wall)


def run_resume(args: argparse.Namespace) -> int:
    from study.sweep import read_study, resume

    quiet_libraries(args.verbose)
    _, options = read_study(args.name, args.storage)  # a missing study fails before Ray starts
    (_, outcome), wall = timed(resume, args.name, args.storage)
    return summarise(options, outcome, wall)


def quiet_libraries(verbose: bool) -> None:
    """Unless `verbose`, the terminal shows the tool's own lines only: Tune's reporter (tables,
    "View detailed results", a TensorBoard hint, `Tuner.restore` advice) and the INFO lines of
    MLflow and Optuna say nothing the progress lines and summary do not, or say it wrongly.
    Errors still show."""
    if verbose:
        return
    import logging
    import os

    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # with verbose=0, Tune's legacy reporter is silent
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("ray.tune", "ray.train", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(
            logging.ERROR if name.startswith("ray") else logging.WARNING
        )
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def summarise(options: Any, outcome: Any, wall: float) -> int:
    """The closing summary; exit code 130 when a signal interrupted the sweep."""
    from study.progress import own_seconds
    from study.status import print_summary
    from study.sweep import default_storage, study_dir

    folder = study_dir(options.storage, options.name)
    print_summary(options.tracking_uri, options.name, own_seconds(outcome.results), wall, folder)
    if not outcome.interrupted:
        return 0
    print(f"interrupted: {len(outcome.unfinished)} trial(s) unfinished; continue with "
          f"`python -m study resume {options.name}`"
          + (f" --storage {folder.parent}" if folder.parent != default_storage() else ""))  # fmt: skip
    return INTERRUPTED


def run_status(args: argparse.Namespace) -> int:
    from study.status import print_status

    print_status(study_uri(args), args.name)
    return 0


def run_best(args: argparse.Namespace) -> int:
    from study.status import print_best

    return print_best(study_uri(args), args.name, args.model)


def run_dashboard(args: argparse.Namespace) -> int:
    """Replace this process with optuna-dashboard on the study's `optuna.db`: a stop signal
    then reaches the server itself and leaves nothing running."""
    import os

    from study.sweep import OPTUNA_DB, read_study, study_dir

    space, options = read_study(args.name, args.storage)
    db = study_dir(options.storage, args.name) / OPTUNA_DB
    if not db.is_file():
        raise ConfigError(
            f"study {args.name!r} is a {space.algorithm} search, which Optuna does not drive: "
            "there is no Optuna study to browse; see its trials with `python -m study status` "
            "or `python -m study ui`"
        )
    print(f"optuna-dashboard for study {args.name} at http://127.0.0.1:{args.port}  (Ctrl-C stops it)",
          flush=True)  # fmt: skip
    exe = Path(sys.executable).parent / "optuna-dashboard"  # installed beside this Python
    command = [str(exe), f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(args.port)]
    os.execv(exe, command)
    return 0  # not reached


def run_list(args: argparse.Namespace) -> int:
    from study.status import print_list
    from study.tracking import resolve_tracking_uri

    print_list(resolve_tracking_uri(args.tracking_uri))
    return 0


def add_tracking_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("ui", help="browse the studies in the MLflow UI (127.0.0.1)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--tracking-uri", help=TRACKING_HELP)
    p.set_defaults(handler=run_ui)

    p = commands.add_parser("server", help="start an MLflow tracking server for a cluster")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to accept workers of a cluster")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--backend-store-uri", help="default: as --tracking-uri of the other commands")
    p.add_argument(
        "--artifacts-destination", default="mlartifacts", help="where it stores artifacts"
    )
    p.set_defaults(handler=run_server)

    p = commands.add_parser(
        "export", help="write the best checkpoints of a study and register them"
    )
    add_study_arguments(p)
    p.add_argument("--out", required=True, help="an empty or new folder to write into")
    p.add_argument("--force", action="store_true", help="replace an earlier export in --out")
    p.add_argument("--per-model", action="store_true", help="the best trial of each model type")
    p.add_argument(
        "--metric",
        help="rank by this metric (default: the study's objective, whose winners get the "
        "aliases champion and champion-<model>; another metric's get best-<metric>[-<model>])",
    )
    p.set_defaults(handler=run_export)


def mlflow_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlflow", *args]


def run_ui(args: argparse.Namespace) -> int:
    import subprocess

    from study.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    if not uri.startswith("sqlite:///"):
        print(f"{uri} is a tracking server: open it in a browser; it is its own UI")
        return 0
    print(f"MLflow UI for {uri} at http://127.0.0.1:{args.port}  (Ctrl-C stops it)", flush=True)
    print_study_pages(uri, args.port)
    cmd = mlflow_command(
        "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(args.port)
    )
    return subprocess.call(cmd)


def print_study_pages(uri: str, port: int, newest: int = 5) -> None:
    """The newest studies' trial pages (sorted by their objective) in the UI about to start."""
    from study import tracking
    from study.metrics import goal

    if not Path(uri.removeprefix("sqlite:///")).is_file():
        return
    for name in tracking.study_names(uri)[-newest:]:
        objective = tracking.study_params(uri, name).get("objective", "val_bce")
        experiment = tracking.client(uri).get_experiment_by_name(name).experiment_id
        page = tracking.runs_page(uri, experiment, objective, goal(objective) == "min", port)
        print(f"  {name}: {page}")


def run_server(args: argparse.Namespace) -> int:
    import socket
    import subprocess

    from study.tracking import resolve_tracking_uri

    store = resolve_tracking_uri(args.backend_store_uri)
    artifacts = str(Path(args.artifacts_destination).expanduser().resolve())
    shown = socket.getfqdn() if args.host in ("0.0.0.0", "::") else args.host
    print(
        f"tracking server: --tracking-uri http://{shown}:{args.port}  (store {store}, artifacts {artifacts})",
        flush=True,
    )
    cmd = mlflow_command(
        "server", "--backend-store-uri", store, "--artifacts-destination", artifacts,
        "--serve-artifacts", "--host", args.host, "--port", str(args.port),
    )  # fmt: skip
    return subprocess.call(cmd)


def run_export(args: argparse.Namespace) -> int:
    from study.export import export_best

    exported = export_best(
        study_uri(args), args.name, args.out, args.per_model, args.metric, force=args.force
    )
    for item in exported:
        note = f"  [{item.standing}]" if item.standing else ""
        print(
            f"{item.label:<5} {item.metric}={item.value:.4f}  trial {item.trial_id}  -> "
            f"{item.folder}  ({item.registered}){note}"
        )
    return 0


def run_cluster_check(args: argparse.Namespace) -> int:
    from study.cluster import validate_cluster_config

    for path in args.configs:
        prepared = validate_cluster_config(path)
        types = ", ".join(prepared.get("available_node_types", {}))
        print(f"{path}: valid ({prepared['provider']['type']}; node types: {types})")
    return 0


def run_table(args: argparse.Namespace) -> int:
    """`study table ...` is `python -m analysis.table ...`: one implementation, two doors."""
    from analysis.table import run

    return run(args)


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    start = time.perf_counter()
    return fn(*args, **kwargs), time.perf_counter() - start
