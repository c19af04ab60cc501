"""Running the tool as a user does: `python -m study` in a fresh process (`run_cli`,
`start_sweep`) or in the test's own (`run_here`), in a home of the test's own whose MLflow store
is seeded; and the hold points that stop a sweep's trials at a moment the test sees."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def home_env(folder: Path, env: dict | None = None) -> dict:
    """The environment with AESTUDY_HOME at `folder`: the default store is folder/mlflow.db."""
    base = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**base, **(env or {}), "AESTUDY_HOME": str(folder)}


@functools.cache
def _store_template() -> Path:
    """An empty MLflow store with all its tables, made once per test process."""
    from study.tracking import client

    folder = Path(tempfile.mkdtemp(prefix="aestudy-store-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    client(f"sqlite:///{folder / 'mlflow.db'}")
    return folder / "mlflow.db"


def seed_store(db: Path) -> None:
    """Put a copy of an empty MLflow store at `db` unless a file is there: what a first use
    makes (MLflow's tables; 4 s of CPU for its migrations in every process that makes one),
    made once per test process. Tests of the making itself (tests/test_tracking.py, several
    processes at once) and of refusals leave it out."""
    if not db.exists():
        shutil.copyfile(_store_template(), db)


def seed_sweep_store(args: tuple[str, ...], home: Path | None) -> None:
    """A sweep about to make its store in `home` (no --tracking-uri) gets a seeded one."""
    if home is not None and args[:1] == ("sweep",) and "--tracking-uri" not in args:
        seed_store(home / "mlflow.db")


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """Run `python -m study ARGS` in a fresh process; returns the CompletedProcess.

    With `cwd`, that folder is also the aestudy home (its default store is cwd/mlflow.db,
    seeded for a sweep: `seed_store`).
    """
    seed_sweep_store(args, cwd)
    return subprocess.run(
        [PYTHON, "-m", "study", *args],
        cwd=cwd or ROOT,
        env=home_env(cwd, env) if cwd else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_here(*args: str, cwd: Path, env: dict | None = None, seed: bool = True) -> SimpleNamespace:
    """`python -m study ARGS` run in this process, as `run_cli(..., cwd=folder)` runs it in a
    fresh one (folder is the working folder and the aestudy home; `env` more variables), for
    the duration of the call. A sweep or resume joins this process's Ray: ask for `local_ray`.
    Returns an object with `returncode`, `stdout` and `stderr` (what the tool printed). A sweep's
    store is seeded (`seed_store`) unless `seed` is False."""
    import contextlib
    import io

    from study.cli.commands import main

    if seed:
        seed_sweep_store(args, cwd)

    out, err = io.StringIO(), io.StringIO()
    with (
        pytest.MonkeyPatch.context() as patch,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        for name, value in {**(env or {}), "AESTUDY_HOME": str(cwd)}.items():
            patch.setenv(name, value)
        patch.chdir(cwd)
        code = main(list(args))
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def start_sweep(
    space: Path, name: str, folder: Path, *extra: str, env: dict | None = None
) -> subprocess.Popen:
    """`python -m study sweep` in a process of its own, home `folder`, its output piped; `env`:
    more variables. Its store is seeded (`seed_store`) unless it logs to a server."""
    cmd = [
        PYTHON,
        "-m",
        "study",
        "sweep",
        str(space),
        "--name",
        name,
        "--storage",
        str(folder),
        *extra,
    ]
    seed_sweep_store(tuple(cmd[3:]), folder)
    return subprocess.Popen(
        cmd,
        cwd=folder,
        env=home_env(folder, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def hold_env(markers: Path, epoch: int = 1) -> dict[str, str]:
    """Variables that make every trial of a sweep wait once, right after `epoch`, until
    markers/release exists (study.sweep.hooks): a trial mid-run at a moment the test sees
    (`wait_for_holds`), however fast its epochs."""
    return {"AESTUDY_HOLD_ONCE_AT_EPOCH": str(epoch), "AESTUDY_HOLD_MARKERS": str(markers)}


def wait_for_holds(markers: Path, count: int, driver: subprocess.Popen) -> None:
    """Return once `count` trials have reached their hold (`hold_env`); fail if the driver ends
    first or 300 s pass."""
    deadline = time.monotonic() + 300
    while sum(1 for p in markers.glob("*") if p.name != "release") < count:
        assert driver.poll() is None, f"the sweep ended before {count} trial(s) held"
        assert time.monotonic() < deadline, f"{count} trial(s) not held in 300 s"
        time.sleep(0.2)
