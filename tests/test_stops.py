"""Every way a sweep is stopped (a scheduler's SIGTERM to the group, a double Ctrl-C, SIGKILL),
on one study, each stop followed by a resume: every trial finishes once."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from study.sweep import leftovers
from study.tracking import client, trial_runs
from study.trial.states import read
from tests.harness.studies import (
    assert_only_the_tool_speaks,
    logged_steps,
    optuna_trials,
    reported_epochs,
    write_space,
)
from tests.harness.studies import tune_trial_states as trial_states
from tests.harness.tool import PYTHON, hold_env, home_env, seed_sweep_store, wait_for_holds

# Every way a sweep is stopped, one after another on one study, each stop followed by a resume
# that the next stop interrupts: what `timeout`, systemd, Slurm and Kubernetes send (SIGTERM to
# the driver's whole process group; its local Ray's processes sit in groups of their own); an
# impatient double Ctrl-C; SIGKILL, which leaves Ray's processes behind. A lone SIGINT or
# SIGTERM to the driver takes the path of the first: the driver turns SIGTERM into the SIGINT
# that Tune handles (study.sweep.ending), and every stop but SIGKILL is followed by more Ctrl-Cs.
STOPS = ("SIGTERM-to-the-group", "SIGINT-twice", "SIGKILL")


@pytest.mark.slow
def test_a_sweep_stopped_every_way_resumes_and_finishes_every_trial_once(
    tmp_path, monkeypatch, cli_here
):
    # one trial at a time, each held once after its first epoch: stop k lands while trial k is
    # mid-run; restarted by the resume, it goes on and trial k + 1 runs up to its own hold
    trials, epochs = len(STOPS) + 1, 3
    space = ae_space(tmp_path, trials, epochs)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    holds = tmp_path / "holds"
    driver = start_driver(tmp_path, "sweep", str(space), "--name", "stopped", env=hold_env(holds))
    for k, how in enumerate(STOPS, start=1):
        wait_for_holds(holds, k, driver)
        if how == "SIGKILL":
            killed = driver.pid
            left = killed_driver_leaves_ray_behind(driver, tmp_path, monkeypatch, cli_here)
        else:
            stopped_driver_says_so(driver, how, uri)
        if k == len(STOPS):
            (holds / "release").touch()  # the last trial runs through
        driver = start_driver(tmp_path, "resume", "stopped", env=hold_env(holds))
    output, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, output[-3000:]
    assert_only_the_tool_speaks(output)  # a driver that started its own Ray
    # the last stop was a SIGKILL: the resume stopped what the killed driver left running
    assert f"left running by this study's killed driver (pid {killed})" in output
    assert not any(leftovers.running(pid) for pid, _ in left)

    after = trial_states("stopped", tmp_path)
    assert len(after) == trials
    assert all(r["state"] == "done" and r["epochs"] == epochs for r in after), after
    for trial_dir in (tmp_path / "stopped").glob("*_*/"):
        if (trial_dir / "progress.csv").exists():
            assert sorted(set(reported_epochs(trial_dir))) == list(range(1, epochs + 1))
    # MLflow: one run per trial, every epoch logged once, no run left dangling. A trial the
    # killed driver started after Tune's last save is unknown to Tune: its run is marked orphaned.
    runs = trial_runs(uri, "stopped")
    orphaned = runs["tags.aestudy.state"] == "orphaned"
    assert orphaned.sum() <= 1 and "RUNNING" not in set(runs["status"]), (
        runs[["tags.aestudy.trial_id", "tags.aestudy.state", "status", "start_time"]].to_string()
        + output[-6000:]
    )
    runs = runs[~orphaned]
    assert sorted(runs["tags.aestudy.trial_id"]) == sorted(r["trial_id"] for r in after)
    assert set(runs["status"]) == {"FINISHED"} and set(runs["tags.aestudy.state"].map(read)) == {
        "done"
    }
    for run_id in runs["run_id"]:  # no epoch logged twice, none lost
        assert logged_steps(tmp_path / "mlflow.db", run_id, "val_bce") == [1, 2, 3]
    # Optuna: every trial Tune ran is complete; one orphaned by the kill is failed, not RUNNING
    states = [t.state.name for t in optuna_trials(tmp_path / "stopped")]
    assert states.count("COMPLETE") == trials and "RUNNING" not in states


def ae_space(folder: Path, trials: int, epochs: int) -> Path:
    """A space of small AEs, run to their last epoch (no scheduler)."""
    return write_space(
        folder,
        num_samples=trials,
        epochs=epochs,
        scheduler={"type": "none"},
        params={"model": ["ae"], "latent_dim": {"int": [2, 8]}},
    )


def start_driver(folder: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """`python -m study ARGS` with one trial at a time, in a session (and process group) of its
    own, its output piped; `env`: more variables. A sweep's store is seeded (`seed_store`)."""
    seed_sweep_store(args, folder)
    extra = ["--max-concurrent", "1"] if args[0] == "sweep" else []
    cmd = [PYTHON, "-m", "study", *args, "--storage", str(folder), *extra]
    return subprocess.Popen(
        cmd,
        cwd=folder,
        env=home_env(folder, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stopped_driver_says_so(driver: subprocess.Popen, how: str, uri: str) -> None:
    """Stop `driver` `how`; it ends at once with exit code 130, says how to continue, shows no
    traceback and, stopped once, leaves the trial it stopped interrupted in MLflow and the study
    run KILLED (a second Ctrl-C cuts that closing short; the resume closes those runs)."""
    if how == "SIGINT-twice":
        driver.send_signal(signal.SIGINT)
        seen = lines_until(driver, "stopping: ")  # the first is being handled: the driver says so
        assert seen and seen[-1].startswith("stopping: "), "".join(seen)[-3000:]
        driver.send_signal(signal.SIGINT)  # lands while the state is being saved
        rest, _ = driver.communicate(timeout=120)
        output = "".join(seen) + rest
    else:
        output = stop_once(driver, how)
    assert driver.returncode == 130, (how, output[-3000:])
    assert "python -m study resume stopped" in output, (how, output[-3000:])
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, (how, output)
    if how == "SIGINT-twice":
        return
    assert "interrupted: " in output
    runs = trial_runs(uri, "stopped")
    interrupted = runs["tags.aestudy.state"] == "interrupted"
    assert interrupted.any() and set(runs.loc[interrupted, "status"]) == {"KILLED"}, how
    experiment = client(uri).get_experiment_by_name("stopped").experiment_id
    study_run = client(uri).search_runs([experiment], "tags.`aestudy.role` = 'study'")[0]
    assert study_run.info.status == "KILLED", how


def lines_until(driver: subprocess.Popen, prefix: str) -> list[str]:
    """What `driver` prints up to its first line starting with `prefix` (or its end)."""
    seen: list[str] = []
    for line in driver.stdout:
        seen.append(line)
        if line.startswith(prefix):
            break
    return seen


def stop_once(driver: subprocess.Popen, how: str) -> str:
    """Signal `driver` once, `how`; once its summary is out (within a minute), keep pressing
    Ctrl-C while it stops Ray, as an impatient user does; returns all it printed."""
    signalled = time.monotonic()
    if how == "SIGTERM-to-the-group":
        os.killpg(driver.pid, signal.SIGTERM)  # the group this test made for the driver
    else:
        driver.send_signal(getattr(signal, how))
    seen = lines_until(driver, "interrupted: ")  # the summary is out: Ray is being stopped now
    assert time.monotonic() - signalled < 60, "".join(seen)[-3000:]
    for _ in range(600):  # impatient Ctrl-Cs while Ray stops change nothing
        driver.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            rest, _ = driver.communicate(timeout=0.3)
            return "".join(seen) + rest
    raise AssertionError(f"{how}: the driver did not end within 3 minutes of its summary")


def killed_driver_leaves_ray_behind(
    driver: subprocess.Popen, folder: Path, monkeypatch, cli_here
) -> list[tuple[int, str]]:
    """SIGKILL: Ray's agents outlive the driver (a minute or more); `status` names them.
    Returns them (pid, name)."""
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert sum(r["state"] == "done" for r in trial_states("stopped", folder)) < len(STOPS) + 1
    monkeypatch.setenv("AESTUDY_HOME", str(folder))  # the driver's home: its key signed the note
    _, found = leftovers.find(folder / "stopped")
    # a process that ends while it is listed reads "?": only the ones still running count. Ray's
    # workers and agents (`ray::…`) are among them; the raylet and the log monitor, which end
    # with the driver, may still be on their way out
    left = [(pid, name) for pid, name in found if leftovers.running(pid)]
    assert any(name.startswith("ray::") for _, name in left), found
    status = cli_here("status", "stopped", cwd=folder)
    assert f"left running by the killed driver (pid {driver.pid})" in status.stdout, status.stdout
    return left


def saved_statuses(folder: Path) -> dict[str, str]:
    """Trial id -> Tune's status in the newest state saved into the study folder (whole: the
    tool replaces the file in one rename)."""
    newest = max(folder.glob("experiment_state-*.json"), default=None)
    if newest is None:
        return {}
    saved = json.loads(newest.read_text())["trial_data"]
    return {json.loads(s)["trial_id"]: json.loads(s)["status"] for s, _ in saved}


@pytest.mark.slow
def test_a_driver_killed_between_two_saves_loses_no_trial_and_runs_none_twice(tmp_path):
    # The moment: a trial has ended (the driver said so) after the newest state saved into the
    # study folder, which still holds it as running. The driver is frozen (SIGSTOP) while the
    # test reads the folder, so no save can slip in between the reading and the SIGKILL.
    trials, epochs = 4, 2
    space = ae_space(tmp_path, trials, epochs)
    driver = start_driver(tmp_path, "sweep", str(space), "--name", "stopped")
    said_done: list[str] = []  # trial ids, as the driver's progress lines end them
    printed: list[str] = []

    def read_lines() -> None:
        for line in driver.stdout:
            printed.append(line)
            found = re.search(r"\| (\w+) done$", line.strip())
            if found:
                said_done.append(found.group(1))

    threading.Thread(target=read_lines, daemon=True).start()
    folder, between = tmp_path / "stopped", None
    deadline = time.monotonic() + 300
    while between is None:
        assert time.monotonic() < deadline and driver.poll() is None, "".join(printed)[-3000:]
        time.sleep(0.05)
        if not said_done:
            continue
        os.kill(driver.pid, signal.SIGSTOP)
        saved = saved_statuses(folder)
        ended_since = [t for t in said_done if t in saved and saved[t] != "TERMINATED"]
        if ended_since and len(said_done) < trials:
            between = ended_since[0]
            os.kill(driver.pid, signal.SIGKILL)
        os.kill(driver.pid, signal.SIGCONT)
    driver.wait()
    assert saved_statuses(folder)[between] != "TERMINATED"  # killed before the next save

    resumed = start_driver(tmp_path, "resume", "stopped")
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output[-3000:]
    after = trial_states("stopped", tmp_path)
    assert len(after) == trials
    assert all(r["state"] == "done" and r["epochs"] == epochs for r in after), after
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = trial_runs(uri, "stopped")
    orphaned = runs["tags.aestudy.state"] == "orphaned"
    runs = runs[~orphaned]
    # the trial that ended between the saves: one run, done, each epoch logged once
    assert sorted(runs["tags.aestudy.trial_id"]) == sorted(r["trial_id"] for r in after)
    assert between in set(runs["tags.aestudy.trial_id"])
    assert set(runs["tags.aestudy.state"].map(read)) == {"done"}
    for run_id in runs["run_id"]:
        assert logged_steps(tmp_path / "mlflow.db", run_id, "val_bce") == list(range(1, epochs + 1))
    (trial_dir,) = folder.glob(f"*_{between}/")
    assert sorted(reported_epochs(trial_dir)) == list(range(1, epochs + 1))  # none trained twice
