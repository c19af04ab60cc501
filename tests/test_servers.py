"""The tracking server and the UI as processes: stopped cleanly, a busy port refused, an outage
of the server mid-sweep survived (its runs closed late, every epoch logged once)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from study import tracking
from tests.harness.servers import free_port, start_server
from tests.harness.studies import assert_only_the_tool_speaks, counts, write_space
from tests.harness.tool import PYTHON, hold_env, seed_store, start_sweep, wait_for_holds

# How long the tracking server stays down: long enough that MLflow's client, in the trials and
# the driver, retries with back-off.
OUTAGE_SECONDS = 20


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line holds `text` (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in command_line(int(entry.name)) and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("command", ["ui", "server"])
def test_ui_and_server_stop_everything_on_sigterm_and_refuse_a_busy_port(
    command, tmp_path, cli_here
):
    seed_store(tmp_path / "served.db")
    store = f"sqlite:///{tmp_path / 'served.db'}"
    flag = "--tracking-uri" if command == "ui" else "--backend-store-uri"
    port = free_port()
    args = [PYTHON, "-m", "study", command, "--port", str(port), flag, store]
    if command == "server":  # two workers (four by default): each of them must stop too
        args += ["--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "2"]
    proc = subprocess.Popen(
        args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    address = f"http://127.0.0.1:{port}"
    ready = f"MLflow UI at {address}" if command == "ui" else f"--tracking-uri {address}"
    seen = []
    for line in proc.stdout:  # "starting …" at once; the address only once the port answers
        seen.append(line)  # (the server's own log, uvicorn's "running on" among it, comes between)
        if line.startswith(("MLflow UI at ", "tracking server: ")):
            assert ready in line and listening(port), "".join(seen)
            break
    assert ready in seen[-1], "".join(seen)[-2000:]  # not the end of the output
    assert seen[0].startswith("starting") and address not in seen[0], "".join(seen)
    assert "DeprecationWarning" not in "".join(seen)  # MLflow's import of starlette's wsgi
    if command == "ui":  # MLflow's hint names an option `study ui` does not have
        assert "--host 0.0.0.0" not in "".join(seen), "".join(seen)
    # MLflow's job runner (GenAI jobs this tool never submits) is not started
    assert not [pid for pid in descendants(proc.pid) if "_job_runner" in command_line(pid)]
    busy = cli_here(command, "--port", str(port), flag, store, cwd=tmp_path)
    assert busy.returncode == 2 and f"port {port} on 127.0.0.1 is in use" in busy.stderr

    proc.send_signal(signal.SIGTERM)  # to the command only, as a scheduler or `kill` would
    assert proc.wait(timeout=60) == 0
    assert not listening(port)
    deadline = time.monotonic() + 15
    while processes_mentioning(str(tmp_path / "served.db")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_mentioning(str(tmp_path / "served.db")) == []
    shutil.rmtree(tmp_path / "artifacts", ignore_errors=True)


def test_closing_runs_never_blocks_tune_s_loop_while_the_server_is_down(capsys):
    from types import SimpleNamespace

    from study.sweep.leaders import Leaderboard
    from study.sweep.progress import TrackingCallback

    dead = tracking.StudyRecord(f"http://127.0.0.1:{free_port()}", "gone", "1", "r")
    callback = TrackingCallback(dead, Leaderboard("val_mse"), drain_seconds=3)
    trial = SimpleNamespace(
        trial_id="t1",
        status="RUNNING",
        last_result={"training_iteration": 2},
        config={"epochs": 2},
        error_file=None,
        checkpoint=None,
    )
    start = time.monotonic()
    callback.on_trial_complete(0, [trial], trial)  # Tune's loop thread: must return at once
    callback.on_trial_error(0, [trial], trial)
    assert time.monotonic() - start < 1.0
    callback.on_experiment_end([trial])  # waits for the closes, bounded, then says what is left
    assert time.monotonic() - start < 10
    assert "MLflow update(s) of ended trials still pending" in capsys.readouterr().out


@pytest.mark.slow
def test_a_tracking_server_killed_mid_sweep_loses_nothing_once_it_returns(tmp_path, local_ray):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, port)
    space = write_space(
        tmp_path,
        num_samples=2,
        epochs=6,
        scheduler={"type": "none"},
        params={"model": ["ae"], "latent_dim": {"int": [2, 8]}},
    )
    holds = tmp_path / "holds"
    driver = start_sweep(
        space,
        "outage",
        tmp_path,
        "--max-concurrent",
        "1",
        "--tracking-uri",
        uri,
        "--address",
        local_ray,
        env=hold_env(holds),
    )
    wait_for_holds(holds, 1, driver)  # the first trial has logged an epoch, and waits
    kill_server(server)
    deadline = time.monotonic() + 15
    while listening(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not listening(port)
    (holds / "release").touch()  # its other epochs, its close and the next trial meet the outage
    time.sleep(OUTAGE_SECONDS)  # the fault itself, not a wait for an event
    server = start_server(tmp_path, port)
    try:
        out, _ = driver.communicate(timeout=600)
        assert driver.returncode == 0, out[-3000:]
        assert_only_the_tool_speaks(out)  # it joined a running Ray (--address)
        assert counts(tmp_path, "outage", uri) == {
            "tune": 2,
            "mlflow": {"FINISHED": 2},
            "optuna": {"COMPLETE": 2},
            "duplicates": 0,
            "lost": 0,
        }
        for run_id in tracking.trial_runs(uri, "outage")["run_id"]:  # every epoch, once
            steps = [m.step for m in tracking.client(uri).get_metric_history(run_id, "val_bce")]
            assert sorted(steps) == [1, 2, 3, 4, 5, 6], (run_id, steps)
    finally:
        kill_server(server)


def kill_server(server: subprocess.Popen) -> None:
    """SIGKILL the server and every process under it (MLflow runs in a process group of its own,
    with uvicorn and workers under it), as a crashed machine or the OOM killer would."""
    for pid in [server.pid, *descendants(server.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.wait()


def command_line(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError):
            parents[int(entry.name)] = int(
                (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            )
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found
