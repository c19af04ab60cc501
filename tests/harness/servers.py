"""MLflow servers the tests start themselves, through `python -m study server`, on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.harness.tool import PYTHON, seed_store


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


def start_server(
    folder: Path,
    port: int,
    store: str | None = None,
    artifacts: str | None = None,
    env: dict | None = None,
) -> subprocess.Popen:
    """`python -m study server` on 127.0.0.1:port, in a session of its own (its MLflow server
    runs in a process group of its own under it); returns once healthy. One worker process: a
    test's few clients need no more, and each worker is an MLflow import. By default its store
    is folder/server.db (seeded: `seed_store`) and its artifacts folder/artifacts; `store` and
    `artifacts` name others (a PostgreSQL database, a bucket), `env` more variables."""
    if store is None:
        seed_store(folder / "server.db")
    log = (folder / "server.log").open("a")
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "study",
            "server",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            store or f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination",
            artifacts or str(folder / "artifacts"),
        ],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    wait_until_healthy(f"http://127.0.0.1:{port}", proc, folder / "server.log")
    return proc
