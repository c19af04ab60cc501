"""Shared fixtures: one shrunken trial config that every fast test starts from."""

from __future__ import annotations

import os
import sys
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


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600):
    """Run `python -m study ARGS` in a fresh process; returns the CompletedProcess."""
    import subprocess

    return subprocess.run(
        [PYTHON, "-m", "study", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
