"""Sweeps on a real local Ray: conditional configs, ASHA, retries, resume after SIGKILL, GPUs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from study.sweep.folder import OPTUNA_JOURNAL, open_search
from study.tracking import trial_runs
from study.trial.config import flat_config
from tests.harness.studies import (
    logged_steps,
    reported_epochs,
    write_space,
)
from tests.harness.studies import tune_trial_states as trial_states
from tests.harness.tool import (
    PYTHON,
    hold_env,
    home_env,
    run_cli,
    run_here,
    seed_store,
    wait_for_holds,
)


def trial_configs(folder: Path) -> list[dict]:
    from ray.tune import ExperimentAnalysis

    return [flat_config(t.config) for t in ExperimentAnalysis(str(folder)).trials]


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
    assert (tmp_path / "s1" / "optuna.journal").is_file()  # NFS-safe, unlike SQLite
    assert not (tmp_path / "s1" / "optuna.db").exists()
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
    study = optuna.load_study(
        study_name=name, storage=open_search(str(folder / name / OPTUNA_JOURNAL))
    )
    runs = trial_runs(f"sqlite:///{folder / 'mlflow.db'}", name).set_index("tags.aestudy.trial_id")
    assert len(study.trials) == len(tune_states)
    for t in study.trials:
        tune = tune_states[t.user_attrs["tune_trial_id"]]
        assert t.user_attrs["mlflow_run_id"] == runs.loc[tune["trial_id"], "run_id"]
        assert sorted(t.intermediate_values) == list(range(1, tune["epochs"] + 1))
        expected = {
            "done": optuna.trial.TrialState.COMPLETE,
            "stopped early": optuna.trial.TrialState.PRUNED,
        }[tune["state"]]
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

    space = write_space(
        tmp_path,
        search={"algorithm": "grid"},
        num_samples=1,
        epochs=3,
        scheduler={"type": "none"},
        params={"model": [model], "latent_dim": [4]},
    )
    markers = tmp_path / "markers"
    env = {"AESTUDY_FAIL_ONCE_AT_EPOCH": "2", "AESTUDY_FAIL_MARKERS": str(markers)}
    cadence = [] if every is None else ["--checkpoint-every", every]
    result = run_here(
        "sweep",
        str(space),
        "--name",
        "retry",
        "--storage",
        str(tmp_path),
        *cadence,
        cwd=tmp_path,
        env=env,
    )
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
    tmp_path, local_ray
):
    from study.sweep.pruning import checkpoints
    from tests.harness.files import saved_checkpoints

    epochs, held = 20, 15  # the trial waits after epoch 15 until the driver is killed
    pruned_past = "checkpoint_000010"  # the first 10 checkpoints are gone while it runs
    space = write_space(
        tmp_path,
        search={"algorithm": "grid"},
        num_samples=None,
        epochs=epochs,
        scheduler={"type": "none"},
        fixed={"batch_size": 256},
        params={"model": ["ae"]},
    )
    cmd = [
        PYTHON,
        "-m",
        "study",
        "sweep",
        str(space),
        "--name",
        "pruned",
        "--storage",
        str(tmp_path),
        "--checkpoint-every",
        "0",
        "--address",
        local_ray,
    ]
    holds = tmp_path / "holds"
    seed_store(tmp_path / "mlflow.db")
    driver = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=home_env(tmp_path, hold_env(holds, held)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    folder = tmp_path / "pruned"
    wait_for_holds(holds, 1, driver)
    # The worker writes each epoch's checkpoint folder as it reports (progress.csv is written
    # by the driver, buffered): wait until 10 of them have been pruned while the trial is held
    # (the pruning follows the state Tune saves, seconds behind).
    deadline, kept = time.monotonic() + 300, []
    while time.monotonic() < deadline and driver.poll() is None:
        kept = [c for t in folder.glob("ae_*/") for c in checkpoints(t)]
        if kept and kept[0].name >= pruned_past:
            break
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert kept and kept[0].name >= pruned_past, f"not pruned while it ran: {kept[:3]}"
    (trial_dir,) = folder.glob("ae_*/")
    kept = checkpoints(trial_dir)
    assert kept[-1].name == f"checkpoint_{held - 1:06d}", "killed while the trial was held"
    (named,) = saved_checkpoints(folder)  # what resume restores from survived the pruning
    assert named in kept

    # The killed driver joined this process's Ray (--address): its trial, an actor it owned,
    # ends with it and frees its CPU. The resume runs in this process, on the same Ray.
    import ray

    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        assert time.monotonic() < deadline, "the killed driver's trial still holds a CPU"
        time.sleep(0.2)
    result = run_here("resume", "pruned", "--storage", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["state"] for r in trial_states("pruned", tmp_path)] == ["done"]
    assert sorted(set(reported_epochs(trial_dir))) == list(range(1, epochs + 1))
    (run_id,) = trial_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "pruned")["run_id"]
    assert logged_steps(tmp_path / "mlflow.db", run_id, "val_bce") == list(range(1, epochs + 1))
    assert len(checkpoints(trial_dir)) == 1  # an ended trial keeps the one its state names


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
        "sweep",
        str(space),
        "--name",
        "gpu",
        "--storage",
        str(tmp_path),
        "--gpus-per-trial",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "--gpus-per-trial 1 but no node of the Ray cluster has that many GPUs" in result.stderr
    assert time.monotonic() - start < 120
    assert not (tmp_path / "gpu").exists()
    # refused after Ray started: no lock and no note of its Ray session left beside the folder
    assert not (tmp_path / ".gpu.lock").exists() and not (tmp_path / ".gpu.ray").exists()
