"""The commands that serve a study to a browser: `ui`, `server` (MLflow) and `dashboard`
(optuna-dashboard). All bind 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from models import ConfigError, ResourceError
from study import databases
from study.hints import study_command
from study.trial.metrics import DEFAULT_OBJECTIVE

STOP_GRACE_S = 10.0


def mlflow_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlflow", *args]


def mlflow_env() -> dict[str, str]:
    """The environment of an MLflow server this tool starts: MLflow's job runner off, unless the
    user's environment turns it on. It runs MLflow's GenAI jobs (prompt optimisation, judges),
    which this tool never submits, in seven processes that each import MLflow; without it a
    server starts in a third of the time (docs/performance.md)."""
    jobs = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
    return {**os.environ, jobs: os.environ.get(jobs, "false")}


def check_workers(workers: int) -> None:
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")


def run_ui(args: argparse.Namespace) -> int:
    from study.tracking import check_reachable, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    if not uri.startswith("sqlite:///"):
        check_reachable(uri)  # a server or a database that does not answer is no UI to open
    if uri.startswith(("http://", "https://")):
        print(f"{uri} is a tracking server: open it in a browser; it is its own UI")
        return 0
    check_workers(args.workers)
    check_port_free("127.0.0.1", args.port)
    print(f"starting the MLflow UI for {uri} on 127.0.0.1:{args.port} …", flush=True)
    # The Host headers a browser on this machine sends; named, MLflow's security middleware
    # also stops suggesting `--host 0.0.0.0`, an option `study ui` does not have (`server` has)
    local = ",".join(f"{host}:{args.port}" for host in ("127.0.0.1", "localhost"))
    cmd = mlflow_command(
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--workers",
        str(args.workers),
        "--allowed-hosts",
        local,
    )

    def ready() -> None:
        print(f"MLflow UI at http://127.0.0.1:{args.port}  (Ctrl-C stops it)", flush=True)
        print_study_pages(uri, args.port)

    return serve(cmd, "127.0.0.1", args.port, ready, mlflow_env())


def print_study_pages(uri: str, port: int, newest: int = 5) -> None:
    """The newest studies' trial pages (sorted by their objective) in the UI about to start."""
    from study import tracking
    from study.trial.metrics import goal

    if not Path(uri.removeprefix("sqlite:///")).is_file():
        return
    for name in tracking.study_names(uri)[-newest:]:
        objective = tracking.study_params(uri, name).get("objective", DEFAULT_OBJECTIVE)
        experiment = tracking.experiment_id(uri, name)
        page = tracking.runs_page(uri, experiment, objective, goal(objective) == "min", port)
        print(f"  {name}: {page}")


def run_server(args: argparse.Namespace) -> int:
    import socket

    from study.tracking import check_reachable, resolve_tracking_uri

    check_workers(args.workers)
    check_port_free(args.host, args.port)
    store = resolve_tracking_uri(args.backend_store_uri)
    if databases.is_database(store):
        check_reachable(store)  # exit 2 naming the database before a server starts
    artifacts = args.artifacts_destination
    if "://" not in artifacts:  # a folder; else a bucket MLflow writes itself (s3://…)
        artifacts = str(Path(artifacts).expanduser().resolve())
    shown = socket.getfqdn() if args.host in ("0.0.0.0", "::") else args.host
    print(
        f"starting a tracking server on {args.host}:{args.port} (store {store}, artifacts "
        f"{artifacts}) …",
        flush=True,
    )
    cmd = mlflow_command(
        "server",
        "--backend-store-uri",
        store,
        "--artifacts-destination",
        artifacts,
        "--serve-artifacts",
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--workers",
        str(args.workers),
    )

    def ready() -> None:
        print(
            f"tracking server: --tracking-uri http://{shown}:{args.port}  (Ctrl-C stops it)",
            flush=True,
        )

    probe = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    return serve(cmd, probe, args.port, ready, mlflow_env())


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
            raise ConfigError(
                f"--host {host}: not an IP address of this machine (e.g. "
                "127.0.0.1, or 0.0.0.0 for every interface)"
            ) from None
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
            raise ResourceError(
                f"port {port} on {host} is in use ({exc.strerror}): is a `study ui` or "
                "`study server` already running? Stop it, or pass --port with another number"
            ) from None


def serve(
    cmd: list[str], host: str, port: int, ready: Callable[[], None], env: dict | None = None
) -> int:
    """Run a server in a process group of its own; call `ready` (which prints the address) once
    its port answers, not before: on a busy machine the MLflow UI takes a minute to listen.
    Stop the whole group (the server, uvicorn and its workers) when this command gets SIGTERM
    or Ctrl-C, so nothing is left serving; exit 0 when stopped that way."""
    import signal
    import subprocess
    import time

    # MLflow's server imports a deprecated starlette module, and each of its workers says so
    # twice; a PYTHONWARNINGS of the user's own wins
    env = {
        "PYTHONWARNINGS": "ignore:starlette.middleware.wsgi is deprecated",
        **(env or os.environ),
    }
    proc = subprocess.Popen(cmd, start_new_session=True, env=env)
    stopped: list[float] = []  # when a stop signal came

    def stop(signum: int, _frame: object) -> None:
        stopped.append(time.monotonic())
        signal_group(proc, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if answering(proc, host, port, stopped):
            ready()
        code = exit_code(proc, stopped)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        end_group(proc)
    return 0 if stopped else code


def exit_code(proc, stopped: list[float]) -> int:
    """The server's exit code. Once stopped it has STOP_GRACE_S to exit, then its group gets
    SIGKILL: a uvicorn waiting out an open connection would otherwise hold this command up."""
    import signal
    import subprocess
    import time

    while True:
        try:
            return proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            if stopped and time.monotonic() - stopped[0] > STOP_GRACE_S:
                signal_group(proc, signal.SIGKILL)


def answering(proc, host: str, port: int, stopped: list[float]) -> bool:
    """Wait until `host:port` accepts a connection; False if the server ended or was stopped
    first."""
    import socket
    import time

    while proc.poll() is None and not stopped:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return True
        time.sleep(0.2)
    return False


def end_group(proc) -> None:
    """Whatever of the server's process group is still alive: SIGTERM, then SIGKILL after
    STOP_GRACE_S."""
    import signal
    import time

    for sig, grace in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 0.0)):
        if not signal_group(proc, sig):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not signal_group(proc, 0):
                return
            time.sleep(0.2)


def signal_group(proc, sig: int) -> bool:
    """Send `sig` to the server's process group (0: only probe it); False if the group is gone."""
    import os

    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True


def run_dashboard(args: argparse.Namespace) -> int:
    """optuna-dashboard on the study's search (its `optuna.db`, or its --search-db), served like
    the MLflow UI."""
    from study.sweep.folder import has_search
    from study.sweep.launch import read_study, study_dir
    from study.sweep.places import search_storage

    space, options = read_study(args.name, args.storage)
    storage = search_storage(options, study_dir(options.storage, args.name))
    if space.algorithm == "grid" or not has_search(storage):
        raise ConfigError(
            f"study {args.name!r} is a {space.algorithm} search, which Optuna does not drive: "
            f"there is no Optuna study to browse; see its trials with `{study_command('status')}` "
            f"or `{study_command('ui')}`"
        )
    check_port_free("127.0.0.1", args.port)
    print(f"starting optuna-dashboard for study {args.name} on 127.0.0.1:{args.port} …", flush=True)
    exe = Path(sys.executable).parent / "optuna-dashboard"  # installed beside this Python
    command = [str(exe), storage, "--host", "127.0.0.1", "--port", str(args.port)]
    if "://" not in storage:  # Optuna's journal file
        command += ["--storage-class", "JournalFileStorage"]  # optuna-dashboard's name for it

    def ready() -> None:
        print(f"optuna-dashboard at http://127.0.0.1:{args.port}  (Ctrl-C stops it)", flush=True)

    # gunicorn (optuna-dashboard's server) opens a control socket in $XDG_RUNTIME_DIR, else in a
    # ~/.gunicorn/ it creates and leaves: a folder that goes with the server keeps home clean.
    with tempfile.TemporaryDirectory(prefix="aestudy-dashboard-") as runtime:
        env = {**os.environ, "XDG_RUNTIME_DIR": runtime}
        return serve(command, "127.0.0.1", args.port, ready, env)
