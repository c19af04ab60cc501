"""The commands that serve a study to a browser: `ui`, `server` (MLflow) and `dashboard`
(optuna-dashboard). All bind 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models import ConfigError


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
