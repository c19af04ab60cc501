"""Shared fixtures: one shrunken trial config that every fast test starts from."""

from __future__ import annotations

import atexit
import functools
import gzip
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

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
LONGEST_FIRST = ("test_best.py", "test_servers.py", "test_sweep.py", "test_faults.py",
                 "test_stops.py", "test_cluster.py", "test_tracking.py", "test_trust.py",
                 "test_trainer.py", "test_browser.py", "test_analysis.py")  # fmt: skip


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


def start_server(folder: Path, port: int) -> subprocess.Popen:
    """`python -m study server` on 127.0.0.1:port over folder/server.db, in a session of its own
    (its MLflow server runs in a process group of its own under it); returns once healthy. One
    worker process: a test's few clients need no more, and each worker is an MLflow import.
    Its store is seeded (`seed_store`)."""
    seed_store(folder / "server.db")
    log = (folder / "server.log").open("a")
    proc = subprocess.Popen(
        [PYTHON, "-m", "study", "server", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "artifacts")],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    wait_until_healthy(f"http://127.0.0.1:{port}", proc, folder / "server.log")
    return proc


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1, started through `python -m study server`."""
    port = free_port()
    proc = start_server(tmp_path_factory.mktemp("mlflow-server"), port)
    yield f"http://127.0.0.1:{port}"
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def tune_trial_states(name: str, storage: Path) -> list[dict]:
    """Tune's own view of a study's trials (its experiment state on disk), to check the tool's
    views against: one dict per trial with trial_id, state, model and epochs reported."""
    from ray.tune import ExperimentAnalysis

    from study.sweep.launch import study_dir
    from study.sweep.progress import trial_state
    from study.trial.config import flat_config

    folder = study_dir(storage, name)
    if not any(folder.glob("experiment_state-*.json")):
        return []
    rows = []
    for t in sorted(ExperimentAnalysis(str(folder)).trials, key=lambda t: t.trial_id):
        last = t.last_result or {}
        rows.append({
            "trial_id": t.trial_id,
            "state": trial_state(t.status, last, t.config),
            "model": flat_config(t.config).get("model", "ae"),
            "epochs": last.get("training_iteration", 0),
        })  # fmt: skip
    return rows


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    """An IDX file (MNIST's format), gzipped if `compress`."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


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


def load_with_mlflow_alone(uri: str, model_uris: list[str], folder: Path) -> dict[str, dict]:
    """Load `model_uris` with MLflow's own API in a fresh `python -I` in an empty `folder` that
    cannot import this project (pickle deserialization off), feed it 100 MNIST test digits;
    returns, per URI, the reconstructions' min, max and MSE (pyfunc and pytorch flavours), and
    the digits fed under the key "digits"."""
    import json

    from study.trial.data import mnist_test_digits

    folder.mkdir(parents=True, exist_ok=True)
    digits = mnist_test_digits()[:100].reshape(100, -1).numpy()
    np.save(folder.parent / "digits.npy", digits)
    script = ROOT / "tests" / "scripts" / "load_with_mlflow_alone.py"
    env = {"PATH": os.environ["PATH"], "HOME": str(folder.parent),
           "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}  # fmt: skip
    result = subprocess.run([PYTHON, "-I", str(script), uri, str(folder.parent / "digits.npy"),
                             *model_uris], cwd=folder, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "digits": digits}


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

    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False,
             configure_logging=False, log_to_driver=False)  # fmt: skip
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


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


@pytest.fixture(scope="session")
def stopped_study(tmp_path_factory, local_ray):
    """The vae runs first and all 3 epochs; the ae, behind it in val_mse at epoch 1 though well
    ahead of the mean digit, is then stopped by ASHA at its first rung (rungs shared across model
    types: `by_model: false`): a model type whose every trial stopped early."""
    from tests.test_sweep import write_space  # a module that imports this one

    folder = tmp_path_factory.mktemp("stopped")
    space = write_space(
        folder, search={"algorithm": "grid"}, num_samples=1, epochs=3,
        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2, "by_model": False},
        fixed={"lr": 0.003}, params={"model": ["vae", "ae"], "latent_dim": [32]},
    )  # fmt: skip
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
    result = subprocess.run([PYTHON, "-m", "study", "export", "stopped", "--out", str(out), "--per-model"],
                            cwd=elsewhere, env=home_env(folder), capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert list(elsewhere.iterdir()) == []  # no store of MLflow's default made there
    return folder, out, result
