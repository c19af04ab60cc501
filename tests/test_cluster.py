"""Clusters: the launcher configs validate offline; a sweep on a two-node cluster of real
`ray start` nodes on this machine logs to one tracking server, keeps results on the shared path
and survives a killed driver; a folder one node cannot see is refused as storage."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from models import ConfigError
from study.sweep.cluster import validate_cluster_config
from study.tracking import client, trial_runs
from tests.harness.servers import free_port
from tests.harness.services import S3_ENV
from tests.harness.studies import WINNING_AE, write_space
from tests.harness.studies import tune_trial_states as trial_states
from tests.harness.tool import (
    PYTHON,
    ROOT,
    hold_env,
    home_env,
    run_cli,
    seed_store,
    wait_for_holds,
)


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-efs.yaml", "cluster-onprem.yaml"])
def test_cluster_configs_validate_against_rays_schema(name):
    prepared = validate_cluster_config(ROOT / name)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def broken_copy(tmp_path: Path, change) -> Path:
    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    change(raw)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_config_without_provider_is_refused(tmp_path):
    path = broken_copy(tmp_path, lambda raw: raw.pop("provider"))
    with pytest.raises(ConfigError, match="needs a provider"):
        validate_cluster_config(path)


def test_a_fractional_gpu_count_is_refused(tmp_path):
    path = broken_copy(
        tmp_path, lambda raw: raw["available_node_types"]["gpu_worker"]["resources"].update(GPU=0.5)
    )
    with pytest.raises(
        ConfigError,
        match=r"available_node_types/gpu_worker/resources/GPU: 0.5 is not of type 'integer'",
    ):
        validate_cluster_config(path)


def test_cluster_check_command(tmp_path, cli_here):
    configs = str(ROOT / "cluster.yaml"), str(ROOT / "cluster-onprem.yaml")
    good = cli_here("cluster-check", *configs, cwd=tmp_path)
    assert good.returncode == 0 and good.stdout.count(": valid") == 2
    broken = str(broken_copy(tmp_path, lambda raw: raw.pop("provider")))
    bad = cli_here("cluster-check", broken, cwd=tmp_path)
    assert bad.returncode == 2 and "needs a provider" in bad.stderr


# The driver presents ~/.ray/auth_token to the cluster's nodes (`ray start` uses tokens by default)
TOKEN_ENV = {"RAY_AUTH_MODE": "token"}


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory) -> Iterator[tuple[str, Path | None]]:
    """Two real `ray start` nodes of one CPU each on this machine, for the tests of this file:
    yields the cluster's address and a folder the second node cannot see (an empty tmpfs mounted
    over it in that node's own mount namespace, as a folder on another machine would look), or
    None where this process may not mount one."""
    hidden = tmp_path_factory.mktemp("local-only") if can_mount_privately() else None
    port = free_port()
    head = ray_node(["--head", f"--port={port}", "--include-dashboard=false"])
    worker = None
    try:
        address = f"127.0.0.1:{port}"
        wait_for_nodes(address, 1, [head])
        worker = ray_node([f"--address={address}"], hide=hidden)
        wait_for_nodes(address, 2, [head, worker])
        yield address, hidden
    finally:  # `ray start --block` takes ~30 s to stop on SIGTERM; nothing of theirs is kept
        for proc in (worker, head):
            if proc is not None:
                kill_group(proc)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group `proc` leads (a session this test made) and wait until it is
    empty."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"process group {proc.pid} still has processes after SIGKILL")


@pytest.mark.slow
@pytest.mark.ray
def test_multi_node_sweep_logs_to_one_server_and_resumes_after_the_driver_is_killed(
    tmp_path, mlflow_server, two_nodes
):
    address, _ = two_nodes
    shared = tmp_path / "shared"
    space = write_space(
        tmp_path,
        search={"algorithm": "grid"},
        num_samples=1,
        epochs=2,
        scheduler={"type": "none"},
        params={"model": ["ae"], "latent_dim": [4, 8]},
    )
    cmd = [
        PYTHON,
        "-m",
        "study",
        "sweep",
        str(space),
        "--name",
        "multi",
        "--storage",
        str(shared),
        "--address",
        address,
        "--tracking-uri",
        mlflow_server,
    ]
    # every trial waits once after its first epoch: two waiting at once, one on each node of
    # one CPU, is the moment to kill the driver
    holds = tmp_path / "holds"
    driver = subprocess.Popen(  # the home (and its signing key) that `resume` below uses
        cmd,
        cwd=tmp_path,
        env=home_env(tmp_path, {**TOKEN_ENV, **hold_env(holds)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for_holds(holds, 2, driver)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert sum(r["state"] == "done" for r in trial_states("multi", shared)) == 0
    (holds / "release").touch()
    result = run_cli("resume", "multi", "--storage", str(shared), cwd=tmp_path, env=TOKEN_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    states = trial_states("multi", shared)
    assert len(states) == 2 and all(r["state"] == "done" for r in states)
    nodes = set()
    for trial_dir in (shared / "multi").glob("ae_*/"):
        nodes |= set(pd.read_csv(trial_dir / "progress.csv")["node_id"])
        assert any(trial_dir.glob("checkpoint_*")), "trial checkpoints live on the shared path"
    assert len(nodes) == 2, "trials ran on both nodes"
    runs = trial_runs(mlflow_server, "multi")
    runs = runs[runs["tags.aestudy.state"] != "orphaned"]  # started after Tune's last save
    assert len(runs) == 2 and set(runs["status"]) == {"FINISHED"}
    assert not (tmp_path / "mlflow.db").exists()  # nothing logged to a node-local file
    for run_id in runs["run_id"]:
        steps = sorted(m.step for m in client(mlflow_server).get_metric_history(run_id, "val_bce"))
        assert steps == [1, 2]


@pytest.mark.slow
@pytest.mark.ray
def test_s3_and_postgres_multi_node_sweep_shares_no_folder_and_resumes_after_a_killed_driver(
    tmp_path, two_nodes, s3, s3_env, postgres, monkeypatch
):
    """The production layout on two real nodes: the study in a bucket, Optuna's study and the
    lock in PostgreSQL, MLflow's store in PostgreSQL behind `study server` with its artifacts in
    the bucket. The driver is killed while a trial waits on each node; `resume` finishes every
    trial once, each epoch logged once, checkpoints only in the bucket; the winner is exported and
    loaded back with MLflow alone."""
    import optuna

    from study.sweep.folder import study_dir
    from tests.harness.files import load_with_mlflow_alone
    from tests.harness.servers import start_server

    address, _ = two_nodes
    bucket = s3.create("team-studies")
    storage, search_db = s3.uri(bucket, "studies"), postgres.create("team_optuna")
    artifacts_env = {"MLFLOW_S3_ENDPOINT_URL": s3.endpoint, **s3_env}
    port = free_port()
    server = start_server(
        tmp_path,
        port,
        store=postgres.create("team_mlflow"),
        artifacts=f"s3://{bucket}/mlflow",
        env=artifacts_env,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        space = write_space(
            tmp_path,
            num_samples=3,
            epochs=2,
            scheduler={"type": "none"},
            fixed=WINNING_AE,  # a winner to export
            params={"model": ["ae"], "latent_dim": {"int": [4, 12]}},
        )
        common = ["--storage", storage, "--address", address, "--tracking-uri", uri]
        cmd = [PYTHON, "-m", "study", "sweep", str(space), "--name", "team", *common]
        holds = tmp_path / "holds"
        driver = subprocess.Popen(
            [*cmd, "--search-db", search_db],
            cwd=tmp_path,
            env=home_env(tmp_path, {**TOKEN_ENV, **s3_env, **hold_env(holds)}),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for_holds(holds, 2, driver)  # a trial waits on each node
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        (holds / "release").touch()
        env = {**TOKEN_ENV, **s3_env}
        result = run_cli("resume", "team", "--storage", storage, cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        print(result.stdout)  # the closing note quotes this sweep's output

        monkeypatch.setenv("AESTUDY_HOME", str(tmp_path))  # the CLI's home: its mirror
        mirror = study_dir(storage, "team")
        states = trial_states("team", mirror.parent)
        assert len(states) == 3 and all(r["state"] == "done" for r in states)
        assert not list(mirror.glob("*/checkpoint_*")), "checkpoints live in the bucket only"
        keys = s3.keys(bucket, "studies/team/")
        for row in states:
            assert any(f"_{row['trial_id']}/checkpoint_" in k for k in keys), row
        nodes = {
            line.split('"node_id": "')[1][:12]
            for k in keys
            if k.endswith("/result.json")
            for line in s3.client()
            .get_object(Bucket=bucket, Key=k)["Body"]
            .read()
            .decode()
            .split("\n")
            if '"node_id": "' in line
        }
        assert len(nodes) == 2, "trials ran on both nodes"
        runs = trial_runs(uri, "team")
        runs = runs[runs["tags.aestudy.state"] != "orphaned"]
        assert len(runs) == 3 and set(runs["status"]) == {"FINISHED"}
        for run_id in runs["run_id"]:
            steps = sorted(m.step for m in client(uri).get_metric_history(run_id, "val_bce"))
            assert steps == [1, 2]
        searched = optuna.load_study(study_name="team", storage=search_db).trials
        assert sorted(t.state.name for t in searched) == ["COMPLETE"] * 3

        out = tmp_path / "exported"
        exported = run_cli(
            "export", "team", "--storage", storage, "--out", str(out), cwd=tmp_path, env=env
        )
        assert exported.returncode == 0, exported.stderr[-3000:]
        assert any(k.startswith("mlflow/") for k in s3.keys(bucket)), "artifacts in the bucket"
        loaded = load_with_mlflow_alone(uri, ["models:/team@champion"], tmp_path / "empty")
        assert (
            0.0
            <= loaded["models:/team@champion"]["min"]
            <= loaded["models:/team@champion"]["max"]
            <= 1.0
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def ray_node(args: list[str], *, hide: Path | None = None) -> subprocess.Popen:
    """A real `ray start --block` node; `hide` mounts an empty tmpfs over that folder for this node
    alone (its own mount namespace), as a folder on another machine would look."""
    ray = str(Path(PYTHON).parent / "ray")
    command = [ray, "start", "--block", "--num-cpus=1", "--node-ip-address=127.0.0.1", *args]

    if hide is not None:
        script = f"mount -t tmpfs none {hide} && exec {' '.join(command)}"
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    # token auth: what `ray start` does by default since Ray 2.59; the AWS credentials the tests'
    # S3 server takes, as each node of a team's cluster has its own (an instance role, ~/.aws)
    env = {**os.environ, **TOKEN_ENV, **S3_ENV}
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def alive_nodes(address: str) -> int:
    """How many nodes the cluster at `address` has alive, as `ray status` reports them."""
    ray = str(Path(PYTHON).parent / "ray")
    status = subprocess.run(
        [ray, "status", f"--address={address}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **TOKEN_ENV},
    )
    active = status.stdout.partition("Active:")[2].partition("Pending:")[0]
    return active.count("node_")


def wait_for_nodes(address: str, count: int, nodes: list[subprocess.Popen]) -> None:
    """Return once `count` nodes are alive. Each `ray status` is an interpreter importing Ray
    (seconds of CPU): it is asked only once the head's port answers."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + 120
    while True:
        assert all(n.poll() is None for n in nodes), "a ray node exited"
        assert time.monotonic() < deadline, f"{count} nodes not alive in 120 s"
        with socket.socket() as s:
            answering = s.connect_ex((host, int(port))) == 0
        if answering and alive_nodes(address) >= count:
            return
        time.sleep(1)


def can_mount_privately() -> bool:
    """Whether this process may mount a tmpfs in a mount namespace of its own (it needs
    CAP_SYS_ADMIN, which a root CI container has and a user's shell does not)."""
    if shutil.which("unshare") is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        probe = subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                f"mount -t tmpfs none {folder}",
            ],
            capture_output=True,
        )
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.ray
def test_node_local_storage_and_a_local_tracking_file_are_refused_on_a_multi_node_cluster(
    tmp_path, mlflow_server, two_nodes
):
    address, storage = two_nodes
    if storage is None:
        pytest.skip("needs to mount a tmpfs in a mount namespace of its own (CAP_SYS_ADMIN)")
    space = write_space(tmp_path)
    common = [
        "sweep",
        str(space),
        "--name",
        "local",
        "--storage",
        str(storage),
        "--address",
        address,
    ]
    no_server = run_cli(*common, cwd=tmp_path, env={**os.environ, **TOKEN_ENV})
    assert no_server.returncode == 2, no_server.stderr[-2000:]
    assert "on a multi-node cluster every trial must log to a tracking server" in no_server.stderr
    local = run_cli(
        *common, "--tracking-uri", mlflow_server, cwd=tmp_path, env={**os.environ, **TOKEN_ENV}
    )
    assert local.returncode == 2, local.stderr[-2000:]
    assert f"--storage {storage} is not shared" in local.stderr


# Polls a cluster's free CPUs; prints the seconds from the first CPU a sweep reserved to the
# moment none was free (or "never" after a minute).
LANE_WATCHER = """
import sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)
total, first, end = ray.cluster_resources()["CPU"], None, time.monotonic() + 60
print("watching", flush=True)
while time.monotonic() < end:
    free = ray.available_resources().get("CPU", 0.0)
    if free < total and first is None:
        first = time.monotonic()
    if free == 0:
        print(f"all lanes busy {time.monotonic() - first:.1f} s after the first", flush=True)
        sys.exit(0)
    time.sleep(0.1)
print("never", flush=True)
"""


@pytest.mark.slow
@pytest.mark.ray
def test_every_lane_of_a_16_cpu_cluster_gets_a_searched_trial_at_once(tmp_path):
    """Joining a cluster (--address) with a searcher and no --max-concurrent, Tune's own rule
    keeps one trial pending at a time: the lanes filled one worker start after another. The
    sweep lets Tune keep as many pending as the cluster has lanes (twice: an autoscaler sees
    demand beyond them)."""
    port = free_port()
    head = ray_node(["--head", f"--port={port}", "--include-dashboard=false", "--num-cpus=16"])
    address, driver = f"127.0.0.1:{port}", None
    try:
        wait_for_nodes(address, 1, [head])
        watcher = subprocess.Popen(
            [PYTHON, "-c", LANE_WATCHER, address],
            env={**os.environ, **TOKEN_ENV},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert watcher.stdout.readline().strip() == "watching"
        space = write_space(
            tmp_path,
            search={"algorithm": "tpe", "seed": 0},
            num_samples=16,
            epochs=1,
            scheduler={"type": "none"},
            params={"model": ["ae"], "latent_dim": {"int": [2, 8]}},
        )
        seed_store(tmp_path / "mlflow.db")
        command = ["sweep", str(space), "--name", "lanes", "--address", address]
        driver = subprocess.Popen(
            [PYTHON, "-m", "study", *command, "--storage", str(tmp_path)],
            cwd=tmp_path,
            env=home_env(tmp_path, TOKEN_ENV),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        said, _ = watcher.communicate(timeout=180)
        found = re.search(r"all lanes busy ([\d.]+) s after the first", said)
        assert found and float(found.group(1)) < 10, said
    finally:
        if driver is not None:
            kill_group(driver)
        kill_group(head)
