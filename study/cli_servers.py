"""The commands that serve a study to a browser: `ui`, `server` (MLflow) and `dashboard`
(optuna-dashboard). All bind 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from models import ConfigError
from study.metrics import DEFAULT_OBJECTIVE


def mlflow_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlflow", *args]


def run_ui(args: argparse.Namespace) -> int:
    from study.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    if not uri.startswith("sqlite:///"):
        print(f"{uri} is a tracking server: open it in a browser; it is its own UI")
        return 0
    check_port_free("127.0.0.1", args.port)
    print(f"MLflow UI for {uri} at http://127.0.0.1:{args.port}  (Ctrl-C stops it)", flush=True)
    print_study_pages(uri, args.port)
    cmd = mlflow_command(
        "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(args.port)
    )
    return serve(cmd)


def print_study_pages(uri: str, port: int, newest: int = 5) -> None:
    """The newest studies' trial pages (sorted by their objective) in the UI about to start."""
    from study import tracking
    from study.metrics import goal

    if not Path(uri.removeprefix("sqlite:///")).is_file():
        return
    for name in tracking.study_names(uri)[-newest:]:
        objective = tracking.study_params(uri, name).get("objective", DEFAULT_OBJECTIVE)
        experiment = tracking.client(uri).get_experiment_by_name(name).experiment_id
        page = tracking.runs_page(uri, experiment, objective, goal(objective) == "min", port)
        print(f"  {name}: {page}")


def run_server(args: argparse.Namespace) -> int:
    import socket

    from study.tracking import resolve_tracking_uri

    check_port_free(args.host, args.port)
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
    return serve(cmd)


def check_port_free(host: str, port: int) -> None:
    """A busy port is refused up front: the server would log `Address already in use` and the
    command would look as if it had started."""
    import errno
    import ipaddress
    import socket

    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: a port is a number in 1-65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ConfigError(f"--host {host}: not an IP address of this machine (e.g. "
                              "127.0.0.1, or 0.0.0.0 for every interface)") from None  # fmt: skip
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not busy
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise ConfigError(
                    f"--host {host} --port {port}: cannot listen there ({exc.strerror}); give "
                    "an address of this machine"
                ) from None
            raise ConfigError(
                f"port {port} on {host} is in use ({exc.strerror}): is a `study ui` or "
                "`study server` already running? Stop it, or pass --port with another number"
            ) from None


def serve(cmd: list[str]) -> int:
    """Run a server in a process group of its own and stop the whole group (the MLflow server,
    uvicorn and its workers) when this command gets SIGTERM or Ctrl-C, so nothing is left
    serving; exit 0 when stopped that way."""
    import os
    import signal
    import subprocess

    proc = subprocess.Popen(cmd, start_new_session=True)
    stopped = []

    def stop(signum: int, _frame: object) -> None:
        stopped.append(signum)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        end_group(proc)
    return 0 if stopped else code


def end_group(proc) -> None:
    """Whatever of the server's process group is still alive: SIGTERM, then SIGKILL after 10 s."""
    import os
    import signal
    import time

    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return  # the group is empty
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


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
    check_port_free("127.0.0.1", args.port)
    exe = Path(sys.executable).parent / "optuna-dashboard"  # installed beside this Python
    command = [str(exe), f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(args.port)]
    os.execv(exe, command)
    return 0  # not reached
