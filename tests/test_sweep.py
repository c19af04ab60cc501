"""Sweeps on a real local Ray: conditional configs, ASHA, retries, resume after SIGKILL, GPUs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from study.sweep import leftovers
from study.tracking import client, trial_runs
from study.trial.config import flat_config
from study.trial.states import read
from tests.conftest import (
    PYTHON,
    hold_env,
    home_env,
    run_cli,
    run_here,
    seed_store,
    seed_sweep_store,
    wait_for_holds,
)
from tests.conftest import tune_trial_states as trial_states
from tests.test_space import GOOD


def write_space(folder: Path, **changes) -> Path:
    """tests.test_space.GOOD with `changes`; a change to None removes the key."""
    raw = yaml.safe_load(yaml.safe_dump(GOOD))
    raw.update(changes)
    raw = {key: value for key, value in raw.items() if value is not None}
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def trial_configs(folder: Path) -> list[dict]:
    from ray.tune import ExperimentAnalysis

    return [flat_config(t.config) for t in ExperimentAnalysis(str(folder)).trials]


def logged_steps(db: Path, run_id: str, metric: str) -> list[int]:
    """The steps at which `metric` was logged, duplicates included, in order."""
    from study.tracking import client

    history = client(f"sqlite:///{db}").get_metric_history(run_id, metric)
    return sorted(int(m.step) for m in history)


def reported_epochs(trial_dir: Path) -> list[int]:

    import pandas as pd

    return pd.read_csv(trial_dir / "progress.csv")["epoch"].astype(int).tolist()


def assert_only_the_tool_speaks(terminal: str) -> None:
    """A sweep's terminal (a driver of its own's stdout and stderr) holds the tool's own lines
    only, by default: none of Ray's, Tune's, Optuna's or MLflow's."""
    for noise in ("Configuration for experiment", "View detailed results", "TensorBoard",
                  "Tuner.restore", "View run", "A new study created", "INFO mlflow",
                  "Token authentication is enabled"):  # fmt: skip
        assert noise not in terminal, noise


@pytest.mark.slow
def test_sweep_runs_conditional_trials_and_asha_stops_some_early(tmp_path, cli_here, local_ray):
    # seed 3: its first eight TPE draws (random start-up) cover all three models
    space = write_space(tmp_path, num_samples=8, epochs=4, search={"algorithm": "tpe", "seed": 3})
    result = run_here("sweep", str(space), "--name", "s1", "--storage", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "8 trials:" in result.stdout and "best validation val_mse per model type" in result.stdout
    )
    assert "trial-seconds per second" in result.stdout  # this run trained: its time is counted
    configs = trial_configs(tmp_path / "s1")
    assert len(configs) == 8
    assert len({c["model"] for c in configs}) >= 3
    for c in configs:
        assert ("noise" in c) == (c["model"] == "dae"), c
        assert ("recon_loss" in c) == (c["model"] == "vae"), c
    states = [r["state"] for r in trial_states("s1", tmp_path)]
    assert "failed" not in states
    assert states.count("stopped early") >= 1 and states.count("done") >= 1
    assert (tmp_path / "s1" / "optuna.db").is_file()
    if (os.cpu_count() or 1) >= 2:  # a lane per core: trials run side by side, not one by one
        runs = trial_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "s1").sort_values("start_time")
        spans = list(zip(runs["start_time"], runs["end_time"], strict=True))
        side_by_side = sum(start < spans[i][1] for i, (start, _) in enumerate(spans[1:]))
        assert side_by_side >= 2, spans
    for trial_dir in (tmp_path / "s1").glob("*_*/"):  # once the sweep is over, the latest only
        assert len(list(trial_dir.glob("checkpoint_*"))) == 1, trial_dir

    status = cli_here("status", "s1", "--storage", str(tmp_path), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    shown = re.findall(r"  (stopped early|stopped, degenerate) ", status.stdout)
    assert len(shown) == states.count("stopped early")
    assert_optuna_saw_what_happened(tmp_path, "s1")
    # every finished trial's run has its test split's numbers, scored from its final checkpoint
    # (the sweep's summary prints the winners' beside their validation numbers)
    runs = trial_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "s1")
    assert runs["metrics.test_mse"].notna().all() and runs["metrics.test_pca_mse"].notna().all()
    assert "(test_mse 0." in result.stdout


def assert_optuna_saw_what_happened(folder: Path, name: str) -> None:
    """The Optuna study holds ASHA's stopped trials as PRUNED with their intermediate values,
    finished ones as COMPLETE with their last value, each linked to its Tune trial and run."""
    import optuna

    tune_states = {r["trial_id"]: r for r in trial_states(name, folder)}
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / name / 'optuna.db'}")
    runs = trial_runs(f"sqlite:///{folder / 'mlflow.db'}", name).set_index("tags.aestudy.trial_id")
    assert len(study.trials) == len(tune_states)
    for t in study.trials:
        tune = tune_states[t.user_attrs["tune_trial_id"]]
        assert t.user_attrs["mlflow_run_id"] == runs.loc[tune["trial_id"], "run_id"]
        assert sorted(t.intermediate_values) == list(range(1, tune["epochs"] + 1))
        expected = {"done": optuna.trial.TrialState.COMPLETE,
                    "stopped early": optuna.trial.TrialState.PRUNED}[tune["state"]]  # fmt: skip
        assert t.state == expected, (t.number, tune)
        if expected == optuna.trial.TrialState.COMPLETE:
            assert t.value == t.intermediate_values[tune["epochs"]]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("every", "model"), [("0", "ae"), (None, "vae")], ids=["checkpoint-every-epoch", "default"]
)
def test_a_trial_that_raises_is_retried_from_its_checkpoint(tmp_path, every, model, local_ray):
    # One trial a case (each failure restarts its worker, a new process): the VAE where the
    # retry from scratch must re-draw the same numbers, its sampling noise included
    import pandas as pd

    space = write_space(tmp_path, search={"algorithm": "grid"}, num_samples=1, epochs=3,
                        scheduler={"type": "none"},
                        params={"model": [model], "latent_dim": [4]})  # fmt: skip
    markers = tmp_path / "markers"
    env = {"AESTUDY_FAIL_ONCE_AT_EPOCH": "2", "AESTUDY_FAIL_MARKERS": str(markers)}
    cadence = [] if every is None else ["--checkpoint-every", every]
    result = run_here(
        "sweep", str(space), "--name", "retry", "--storage", str(tmp_path), *cadence,
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "retrying from its last checkpoint" in result.stdout
    assert len(list(markers.iterdir())) == 1  # the trial really failed once
    assert [r["state"] for r in trial_states("retry", tmp_path)] == ["done"]
    db = tmp_path / "mlflow.db"
    runs = trial_runs(f"sqlite:///{db}", "retry")
    assert len(runs) == 1 and set(runs["status"]) == {"FINISHED"}
    (run_id,) = runs["run_id"]
    assert logged_steps(db, run_id, "train_loss") == [1, 2, 3]  # each epoch logged once
    (trial_dir,) = [t for t in (tmp_path / "retry").glob("*_*/") if (t / "progress.csv").exists()]
    reported = pd.read_csv(trial_dir / "progress.csv")
    if every == "0":  # restarted from the epoch-2 checkpoint: epochs 1 and 2 not trained again
        assert reported["epoch"].tolist() == [1, 2, 3]
    else:  # a 3-epoch trial lasts under 10 s: no checkpoint before its end, so it restarted
        assert reported["epoch"].tolist() == [1, 2, 1, 2, 3]
        # ... from scratch, and re-trained the same numbers (the seed's RNG drives it all)
        first, again = reported.iloc[:2], reported.iloc[2:4]
        assert first["val_mse"].tolist() == again["val_mse"].tolist()
        assert first["train_loss"].tolist() == again["train_loss"].tolist()


@pytest.mark.slow
def test_checkpoints_are_pruned_during_a_sweep_and_a_killed_driver_resumes_from_what_is_left(
    tmp_path, local_ray, monkeypatch
):
    from study.sweep.pruning import checkpoints, saved_checkpoints

    epochs, held = 50, 40  # the trial waits after epoch 40 until the driver is killed
    space = write_space(tmp_path, search={"algorithm": "grid"}, num_samples=None, epochs=epochs,
                        scheduler={"type": "none"}, fixed={"batch_size": 256},
                        params={"model": ["ae"]})  # fmt: skip
    cmd = [PYTHON, "-m", "study", "sweep", str(space), "--name", "pruned", "--storage",
           str(tmp_path), "--checkpoint-every", "0"]  # fmt: skip
    holds = tmp_path / "holds"
    seed_store(tmp_path / "mlflow.db")
    driver = subprocess.Popen(cmd, cwd=tmp_path, env=home_env(tmp_path, hold_env(holds, held)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    folder = tmp_path / "pruned"
    wait_for_holds(holds, 1, driver)
    # The worker writes each epoch's checkpoint folder as it reports (progress.csv is written
    # by the driver, buffered): wait until 20 of them have been pruned while the trial is held
    # (the pruning follows the state Tune saves, seconds behind).
    deadline, kept = time.monotonic() + 300, []
    while time.monotonic() < deadline and driver.poll() is None:
        kept = [c for t in folder.glob("ae_*/") for c in checkpoints(t)]
        if kept and kept[0].name >= "checkpoint_000020":
            break
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert kept and kept[0].name >= "checkpoint_000020", f"not pruned while it ran: {kept[:3]}"
    (trial_dir,) = folder.glob("ae_*/")
    kept = checkpoints(trial_dir)
    assert kept[-1].name == f"checkpoint_{held - 1:06d}", "killed while the trial was held"
    (named,) = saved_checkpoints(folder)  # what resume restores from survived the pruning
    assert named in kept

    # The resume runs in this process, on this process's Ray: it leaves the killed driver's Ray
    # alone (a resume that starts its own stops it, as the stop test shows). Stopped here, as a
    # resume of its own would, so that the held trial does not linger.
    monkeypatch.setenv("AESTUDY_HOME", str(tmp_path))  # the driver's home: its key signed the note
    leftovers.stop(folder)
    result = run_here("resume", "pruned", "--storage", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["state"] for r in trial_states("pruned", tmp_path)] == ["done"]
    assert sorted(set(reported_epochs(trial_dir))) == list(range(1, epochs + 1))
    (run_id,) = trial_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "pruned")["run_id"]
    assert logged_steps(tmp_path / "mlflow.db", run_id, "val_bce") == list(range(1, epochs + 1))
    assert len(checkpoints(trial_dir)) == 1  # an ended trial keeps the one its state names


def test_pruning_deletes_nothing_without_a_readable_saved_state(tmp_path):
    from study.sweep.pruning import prune_behind_saved_state

    trial_dir = tmp_path / "ae_abc_00000"
    for i in range(5):
        (trial_dir / f"checkpoint_{i:06d}").mkdir(parents=True)
    assert prune_behind_saved_state(tmp_path) == 0  # no state saved yet
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": [["{}", ')
    assert prune_behind_saved_state(tmp_path) == 0  # a state being written
    state = {"last_result": {"trial_id": "abc_00000", "checkpoint_dir_name": "checkpoint_000003"}}
    (tmp_path / "experiment_state-2026-01-01_00-00-01.json").write_text(
        json.dumps({"trial_data": [["{}", json.dumps(state)]]})
    )
    assert prune_behind_saved_state(tmp_path) == 2  # 0 and 1; 2 (the one before) and newer stay
    assert [c.name[-1] for c in sorted(trial_dir.iterdir())] == ["2", "3", "4"]


def test_every_lane_of_a_local_ray_gets_a_trial_at_once(tmp_path, local_ray):
    """Without --max-concurrent, Tune keeps one searcher trial pending at a time, and the lanes
    came up one worker start after another; the sweep gives Tune the local Ray's lane count."""
    from study.sweep.launch import SweepOptions, tune_config
    from study.sweep.space_file import load_space

    space = load_space(write_space(tmp_path))

    def lanes(**options) -> int | None:
        config = tune_config(space, SweepOptions(name="lanes", **options), tmp_path)
        return config.max_concurrent_trials

    # this process's Ray: 2 CPUs, 1 GPU
    assert lanes() == 2  # one CPU a trial
    assert lanes(cpus_per_trial=0.5) == 4
    assert lanes(cpus_per_trial=0.25, gpus_per_trial=0.125) == 8  # the GPU bounds it
    assert lanes(cpus_per_trial=0.1, gpus_per_trial=0.1) == 10  # no float rounding loss
    assert lanes(max_concurrent=1) == 1  # the user's limit stands
    assert lanes(address="auto") is None  # a cluster may grow: Tune's own default


@pytest.mark.slow
def test_asking_for_a_gpu_the_cluster_lacks_fails_fast(tmp_path):
    space = write_space(tmp_path)
    start = time.monotonic()
    result = run_cli(
        "sweep", str(space), "--name", "gpu", "--storage", str(tmp_path), "--gpus-per-trial", "1",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--gpus-per-trial 1 but no node of the Ray cluster has that many GPUs" in result.stderr
    assert time.monotonic() - start < 120
    assert not (tmp_path / "gpu").exists()
    # refused after Ray started: no lock and no note of its Ray session left beside the folder
    assert not (tmp_path / ".gpu.lock").exists() and not (tmp_path / ".gpu.ray").exists()


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
    space = write_space(tmp_path, num_samples=trials, epochs=epochs, scheduler={"type": "none"},
                        params={"model": ["ae"], "latent_dim": {"int": [2, 8]}})  # fmt: skip
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
    assert orphaned.sum() <= 1 and "RUNNING" not in set(runs["status"])
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


def start_driver(folder: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """`python -m study ARGS` with one trial at a time, in a session (and process group) of its
    own, its output piped; `env`: more variables. A sweep's store is seeded (`seed_store`)."""
    seed_sweep_store(args, folder)
    extra = ["--max-concurrent", "1"] if args[0] == "sweep" else []
    cmd = [PYTHON, "-m", "study", *args, "--storage", str(folder), *extra]
    return subprocess.Popen(cmd, cwd=folder, env=home_env(folder, env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip


def stopped_driver_says_so(driver: subprocess.Popen, how: str, uri: str) -> None:
    """Stop `driver` `how`; it ends at once with exit code 130, says how to continue, shows no
    traceback and, stopped once, leaves the trial it stopped interrupted in MLflow and the study
    run KILLED (a second Ctrl-C cuts that closing short; the resume closes those runs)."""
    if how == "SIGINT-twice":
        driver.send_signal(signal.SIGINT)
        time.sleep(0.5)  # the second one lands while the first is being handled
        driver.send_signal(signal.SIGINT)
        output, _ = driver.communicate(timeout=120)
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


def stop_once(driver: subprocess.Popen, how: str) -> str:
    """Signal `driver` once, `how`; once its summary is out (within a minute), keep pressing
    Ctrl-C while it stops Ray, as an impatient user does; returns all it printed."""
    signalled = time.monotonic()
    if how == "SIGTERM-to-the-group":
        os.killpg(driver.pid, signal.SIGTERM)  # the group this test made for the driver
    else:
        driver.send_signal(getattr(signal, how))
    seen: list[str] = []
    for line in driver.stdout:  # the summary is out: Ray is being stopped now
        seen.append(line)
        if line.startswith("interrupted: "):
            break
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
    # a process that ends while it is listed reads "?": only the ones still running count
    left = [(pid, name) for pid, name in found if leftovers.running(pid)]
    assert left and all(name.startswith("ray::") for _, name in left), found
    status = cli_here("status", "stopped", cwd=folder)
    assert f"left running by the killed driver (pid {driver.pid})" in status.stdout, status.stdout
    return left


def optuna_trials(folder: Path) -> list:
    import optuna

    storage = f"sqlite:///{folder / 'optuna.db'}"
    return optuna.load_study(study_name=folder.name, storage=storage).trials
