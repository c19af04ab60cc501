"""Shared fixtures: one shrunken trial config that every fast test starts from."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# Tests run on 2 cores; keep torch from oversubscribing them when Ray runs trials in parallel.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def tiny_config() -> dict:
    """A trial that trains in about a second on mnist-5k."""
    return {"model": "ae", "latent_dim": 8, "epochs": 2, "batch_size": 128, "seed": 0}


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """Run `python -m study ARGS` in a fresh process; returns the CompletedProcess.

    Sweeps should pass `cwd=tmp_path`: the default MLflow store is ./mlflow.db.
    """
    return subprocess.run(
        [PYTHON, "-m", "study", *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_until_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Poll an MLflow server's /health until it answers; fail with its log if it dies or hangs."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not start: {log.read_text()[-2000:]}") from None
            time.sleep(1)


def free_port() -> int:

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1, started through `python -m study server`."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen(
        [PYTHON, "-m", "study", "server", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    wait_until_healthy(uri, proc, folder / "server.log")
    yield uri
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
