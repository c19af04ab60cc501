"""Fixtures and hooks: the test environment, the order files are handed out in, seeded
generators, and the Ray, servers and finished studies tests share (helpers: tests/harness/)."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.harness.files import write_idx
from tests.harness.servers import free_port, start_server
from tests.harness.services import S3, S3_ENV, Postgres, postgres_server, s3_server
from tests.harness.studies import write_space
from tests.harness.tool import PYTHON, home_env, run_here

# Tests run on 2 cores; keep torch from oversubscribing them when Ray runs trials in parallel.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Nothing a test runs may touch the user's ~/.aestudy or a store named in their environment.
os.environ["AESTUDY_HOME"] = tempfile.mkdtemp(prefix="aestudy-test-home-")
atexit.register(shutil.rmtree, os.environ["AESTUDY_HOME"], ignore_errors=True)
os.environ.pop("MLFLOW_TRACKING_URI", None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reverse",
        action="store_true",
        help="run the tests in the reverse of their usual order: a test that passes only after "
        "another has run fails one of the two orders",
    )


# The files that take longest, longest first, by their seconds in a one-process run on 2 cores
# (docs/performance.md, "The test suite"). A file runs on one worker (--dist loadfile), handed
# out in this order (the Makefile turns off xdist's own reordering by test count): longest
# first, the two workers end within seconds of each other; a long file handed out late leaves
# the other worker idle at the end (a minute, with the stop test tenth).
LONGEST_FIRST = (
    "test_best.py",
    "test_servers.py",
    "test_sweep.py",
    "test_faults.py",
    "test_stops.py",
    "test_cluster.py",
    "test_tracking.py",
    "test_trust.py",
    "test_trainer.py",
    "test_browser.py",
    "test_analysis.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Files not listed above follow, those with the most tests that start Ray (slow, or a
    # sweep in `local_ray`) first. The sort is stable: a file's tests keep their order, files
    # of equal weight their usual one.
    heavy = Counter(item.path for item in items if starts_ray(item))
    listed = {name: rank for rank, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: (listed.get(item.path.name, len(listed)), -heavy[item.path]))
    if config.getoption("--reverse"):
        items.reverse()
    for item in items:  # what `make test-quick` leaves out with the slow tests
        if "local_ray" in item.fixturenames:
            item.add_marker(pytest.mark.ray)


def starts_ray(item: pytest.Item) -> bool:
    """Whether the test starts a Ray or sweeps in one: the tests that weigh."""
    return item.get_closest_marker("slow") is not None or "local_ray" in item.fixturenames


@pytest.fixture(autouse=True)
def seeded_generators() -> None:
    """Every test starts from the same global random state, whatever ran before it: a model's
    initial weights and an unseeded draw come from torch's global generator, and a test whose
    result hung on them passed alone and failed after others (the DAE's gradient test)."""
    import random

    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def tiny_config() -> dict:
    """A trial that trains in about a second on mnist-5k."""
    return {"model": "ae", "latent_dim": 8, "epochs": 2, "batch_size": 128, "seed": 0}


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1, started through `python -m study server`."""
    port = free_port()
    proc = start_server(tmp_path_factory.mktemp("mlflow-server"), port)
    yield f"http://127.0.0.1:{port}"
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server on 127.0.0.1 (Debian's, run as its unprivileged user when the
    tests run as root), in a folder that user may enter; stopped at the end of the session."""
    folder = Path(tempfile.mkdtemp(prefix="aestudy-pg-"))
    folder.chmod(0o755)
    try:
        with postgres_server(folder / "server") as server:
            yield server
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> Iterator[S3]:
    """An S3-compatible server (moto's server mode) on 127.0.0.1, stopped at the end of the
    session; the AWS credentials it takes are in the environment of every test that asks for it
    (`s3_env`)."""
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def s3_env(s3, monkeypatch) -> dict:
    """The AWS credentials moto's server takes, in this test's environment (and returned)."""
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    return dict(S3_ENV)


@pytest.fixture
def idx_folder(tmp_path: Path) -> Path:
    """A small MNIST-format folder of random digits, with a test split (t10k)."""
    rng = np.random.default_rng(0)
    for prefix, n, compress in (("train", 240, True), ("t10k", 50, False)):
        write_idx(
            tmp_path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), compress
        )
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, compress)
    return tmp_path


@pytest.fixture
def cli_here():
    """`run_here` with no store seeded, for commands refused before any work: a fresh
    interpreter would only add seconds of imports, and a refusal must leave no store behind."""
    return functools.partial(run_here, seed=False)


@pytest.fixture(scope="session")
def local_ray() -> Iterator[str]:
    """One local Ray in this test process, started as a sweep's driver starts its own (two CPU
    lanes, no dashboard; one GPU that is a name only, for the tests of GPU lanes), for the sweeps
    that `run_here` runs: a driver finds Ray running and joins it. Its address, for a driver of
    its own that needs no Ray of its own (`--address`, as on a cluster). What a sweep of its own
    adds, a fresh interpreter and a Ray started and stopped, is tested by the sweeps that run
    `python -m study` (`run_cli`), the ones that stop, kill or time their driver."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=1,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def stopped_study(tmp_path_factory, local_ray):
    """The vae runs first and all 3 epochs; the ae, behind it in val_mse at epoch 1 though well
    ahead of the mean digit, is then stopped by ASHA at its first rung (rungs shared across model
    types: `by_model: false`): a model type whose every trial stopped early."""

    folder = tmp_path_factory.mktemp("stopped")
    space = write_space(
        folder,
        search={"algorithm": "grid"},
        num_samples=1,
        epochs=3,
        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2, "by_model": False},
        fixed={"lr": 0.003},
        params={"model": ["vae", "ae"], "latent_dim": [32]},
    )
    result = run_here("sweep", str(space), "--name", "stopped", "--max-concurrent", "1", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    (folder / "sweep.out").write_text(result.stdout)
    return folder, result.stdout


@pytest.fixture(scope="session")
def exported(stopped_study):
    """`export stopped --out exports/first --per-model`, once, as the README writes it; the
    tests that only read an export share it. Returns (folder, out, the command's result)."""
    folder, _ = stopped_study
    out = folder / "exports" / "first"
    # run from another folder than the store's, as from the repository after `make quickstart`
    elsewhere = folder / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run(
        [PYTHON, "-m", "study", "export", "stopped", "--out", str(out), "--per-model"],
        cwd=elsewhere,
        env=home_env(folder),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert list(elsewhere.iterdir()) == []  # no store of MLflow's default made there
    return folder, out, result
