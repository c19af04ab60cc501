"""MLflow: a sweep logs to a real `mlflow server` on 127.0.0.1; export and the registry."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest
import torch

import models
from study.tracking import client, trial_runs
from study.trial.data import load_splits
from study.trial.evaluate import noisy_copy, reconstruction_metrics
from study.trial.states import read
from study.views.export import load_model
from study.views.runs import study_runs
from tests.harness.files import load_with_mlflow_alone
from tests.harness.servers import free_port
from tests.harness.studies import write_space
from tests.harness.tool import PYTHON, run_cli, run_here

PICTURES = {"reconstructions.png", "denoising.png", "latent.png", "loss_curves.png"}


@pytest.fixture(scope="module")
def logged_study(mlflow_server, tmp_path_factory, local_ray):
    """A small sweep (ae + vae, ASHA on) logged to the server; returns (uri, folder)."""
    folder = tmp_path_factory.mktemp("tracked")
    space = write_space(
        folder,
        num_samples=5,
        epochs=3,
        search={"algorithm": "tpe", "seed": 3},
        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2},
        params={
            "model": ["ae", "vae"],
            "latent_dim": {"int": [2, 6]},
            "recon_loss": {"values": ["mse", "bce"], "when": {"model": "vae"}},
        },
    )
    result = run_here(
        "sweep",
        str(space),
        "--name",
        "tracked",
        "--storage",
        str(folder),
        "--tracking-uri",
        mlflow_server,
        "--max-concurrent",
        "1",
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (folder / "mlflow.db").exists()  # nothing went to a local store
    assert "View run" not in result.stdout + result.stderr  # MLflow's line per run, over HTTP
    return mlflow_server, folder


def test_every_trial_run_has_params_metrics_per_epoch_tags_and_pictures(logged_study):
    uri, _ = logged_study
    runs = trial_runs(uri, "tracked")
    assert len(runs) == 5
    assert set(runs["tags.aestudy.model"]) == {"ae", "vae"}
    c = client(uri)
    study_run = runs["tags.aestudy.study_run"].unique()
    assert len(study_run) == 1 and c.get_run(study_run[0]).data.tags["aestudy.role"] == "study"

    for _, row in runs.iterrows():
        run = c.get_run(row["run_id"])
        tags, params = run.data.tags, run.data.params
        assert read(tags["aestudy.state"]) in ("done", "stopped early")
        assert run.info.status == "FINISHED"
        for key in (
            "aestudy.study",
            "aestudy.trial_id",
            "aestudy.seed",
            "aestudy.device",
            "aestudy.host",
            "aestudy.git_commit",
            "aestudy.ray_version",
            "aestudy.torch_version",
        ):
            assert tags[key], key
        assert params["model"] == tags["aestudy.model"]
        assert ("recon_loss" in params) and ("beta" in params) == (params["model"] == "vae")
        assert "noise" not in params  # neither model has one
        epochs = int(tags["aestudy.epochs"])
        assert "epoch" not in run.data.metrics  # a count, not a result to chart
        for metric in ("val_mse", "val_bce", "train_loss"):
            steps = [m.step for m in c.get_metric_history(run.info.run_id, metric)]
            assert sorted(steps) == list(range(1, epochs + 1)), metric
        for metric in ("denoise_mse", "probe_acc"):  # at ASHA's rungs (1, 2) and the last epoch
            steps = [m.step for m in c.get_metric_history(run.info.run_id, metric)]
            assert sorted(steps) == [e for e in range(1, epochs + 1) if e in (1, 2, 3)], metric
        assert (epochs < 3) == (read(tags["aestudy.state"]) == "stopped early")
        artifacts = {a.path for a in c.list_artifacts(run.info.run_id)}
        assert artifacts >= PICTURES | {"checkpoint"}
        # drawn once, by the driver, of the epoch the trial ended at (stopped early or not)
        assert tags["aestudy.pictures"] == str(epochs)
        if params["model"] == "vae":
            assert "prior_samples.png" in artifacts
            # the seed's latent grid only where the code is 2-D: wider codes show one slice
            assert ("latent_grid.png" in artifacts) == (params["latent_dim"] == "2")
            assert "kl" in run.data.metrics and "recon_kl" in run.data.metrics
        assert {a.path for a in c.list_artifacts(run.info.run_id, "checkpoint")} == {
            "checkpoint/config.json",
            "checkpoint/model.pt",
        }


def test_pictures_a_killed_driver_did_not_draw_are_drawn_by_the_next_fit(logged_study):
    from ray.tune import ExperimentAnalysis

    from study.sweep import pictures
    from study.tracking import PICTURES as DRAWN
    from study.tracking import StudyRecord

    uri, folder = logged_study
    runs = trial_runs(uri, "tracked")
    c = client(uri)
    run_id, trial_id = runs.iloc[0]["run_id"], runs.iloc[0]["tags.aestudy.trial_id"]
    epoch = c.get_run(run_id).data.tags[DRAWN]
    c.delete_tag(run_id, DRAWN)  # what a driver killed before drawing leaves
    record = StudyRecord(uri, "tracked", runs.iloc[0]["experiment_id"], "")
    trials = ExperimentAnalysis(str(folder / "tracked")).trials
    assert pictures.catch_up(record, trials) == 1  # that run only: the others have theirs
    assert c.get_run(run_id).data.tags[DRAWN] == epoch
    assert {a.path for a in c.list_artifacts(run_id)} >= PICTURES
    assert trial_id in {t.trial_id for t in trials}


def test_resuming_a_finished_study_adds_no_runs(logged_study):
    uri, folder = logged_study
    before = trial_runs(uri, "tracked")
    result = run_here("resume", "tracked", "--storage", str(folder), cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no trial reported a trained epoch in this run (each had ended already" in result.stdout
    after = trial_runs(uri, "tracked")
    assert sorted(after["run_id"]) == sorted(before["run_id"])
    for run_id in after["run_id"]:
        steps = [m.step for m in client(uri).get_metric_history(run_id, "val_bce")]
        assert len(steps) == len(set(steps))


def test_export_writes_loadable_checkpoints_equal_to_the_trials_and_registers_them(
    logged_study, tmp_path
):
    uri, _ = logged_study
    out = tmp_path / "out"
    result = run_here(
        "export", "tracked", "--out", str(out), "--per-model", "--tracking-uri", uri, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    val = load_splits("mnist-5k").val_x
    runs = trial_runs(uri, "tracked")
    # What may be crowned, computed here from the raw runs: trials that ran all 3 epochs and
    # beat the mean digit; the best by val_bce of each type.
    full = runs[
        (runs["tags.aestudy.epochs"] == "3")
        & (runs["metrics.val_mse"] < runs["metrics.mean_digit_mse"])
    ]
    crowned = set(full["tags.aestudy.model"])
    assert crowned and {p.name for p in out.iterdir()} == crowned
    for model_type in sorted(crowned):
        folder = out / model_type
        record = json.loads((folder / "metrics.json").read_text())
        assert record["model"] == model_type and {p.name for p in folder.iterdir()} >= PICTURES
        exported = models.load(folder / "checkpoint")
        # the exported weights reproduce the held-out number the trial logged
        logged = runs.set_index("run_id").loc[record["run_id"], "metrics.val_mse"]
        again = reconstruction_metrics(exported, val, noisy_copy(val))["val_mse"]
        assert again == pytest.approx(logged, rel=1e-6)
        # the best of its type really is the best by the study's objective
        mine = full[full["tags.aestudy.model"] == model_type]
        assert record["metrics"]["val_bce"] == pytest.approx(mine["metrics.val_bce"].min())
        registered = load_model(f"models:/tracked@champion-{model_type}", tracking_uri=uri)
        x = val[:16]
        assert torch.equal(registered.reconstruct(x), exported.reconstruct(x))
        version = client(uri).get_model_version_by_alias("tracked", f"champion-{model_type}")
        assert version.run_id == record["run_id"]
    # over HTTP, in a process that cannot import this project, MLflow alone loads the champion
    champion = client(uri).get_model_version_by_alias("tracked", "champion")
    label = next(
        m
        for m in crowned
        if json.loads((out / m / "metrics.json").read_text())["run_id"] == champion.run_id
    )
    found = load_with_mlflow_alone(uri, ["models:/tracked@champion"], tmp_path / "clean" / "empty")
    x = torch.from_numpy(found["digits"])
    own = models.load(out / label / "checkpoint").reconstruct(x.reshape(-1, 1, 28, 28))
    expected = float(((own.detach().reshape(len(x), -1) - x) ** 2).mean())
    assert found["models:/tracked@champion"]["mse"] == pytest.approx(expected, rel=1e-5)


def test_export_errors_are_clear(logged_study, tmp_path):
    uri, _ = logged_study
    out = str(tmp_path / "out")
    missing = run_here("export", "nope", "--out", out, "--tracking-uri", uri, cwd=tmp_path)
    assert missing.returncode == 2 and "no study 'nope'" in missing.stderr
    bad_metric = run_here(
        "export", "tracked", "--out", out, "--metric", "loss", "--tracking-uri", uri, cwd=tmp_path
    )
    assert bad_metric.returncode == 2 and "--metric 'loss'" in bad_metric.stderr


def test_trials_closed_since_names_runs_closed_as_ended_after_the_moment(tmp_path):
    """What `fit` trusts over a stale saved Tune state: runs this driver closed as ended."""
    from study import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    record = tracking.ensure_study(uri, "closed", "", {"objective": "val_bce"})
    c = client(uri)
    for trial_id in ("early", "failed", "done", "degenerate", "interrupted", "open"):
        c.create_run(
            record.experiment_id,
            tags={tracking.ROLE: "trial", tracking.TRIAL_ID: trial_id, "aestudy.model": "ae"},
        )
    tracking.finish_trial(uri, record.experiment_id, "early", "failed")
    time.sleep(0.01)
    since = int(time.time() * 1000)
    for trial_id, state in (("failed", "failed"), ("done", "done"), ("interrupted", "interrupted")):
        tracking.finish_trial(uri, record.experiment_id, trial_id, state)
    tracking.finish_trial(uri, record.experiment_id, "degenerate", "done", degenerate=True)
    closed = tracking.trials_closed_since(uri, record.experiment_id, since)
    assert closed == {"failed", "done", "degenerate"}
    # the tag holds status's words; the runs every view reads hold the state
    tags = tracking.trial_runs(uri, "closed").set_index("tags.aestudy.trial_id")[
        "tags.aestudy.state"
    ]
    assert tags["degenerate"] == "degenerate" and tags["done"] == "done"
    states = study_runs(uri, "closed").set_index("trial_id")["state"]
    assert states["degenerate"] == "done" and states["interrupted"] == "interrupted"


def test_unreachable_tracking_server_fails_before_launch(tmp_path):
    space = write_space(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_cli(
        "sweep",
        str(space),
        "--name",
        "x",
        "--storage",
        str(tmp_path),
        "--tracking-uri",
        dead,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert f"tracking server {dead} cannot be reached" in result.stderr
    assert not (tmp_path / "x").exists()


def test_dashboard_serves_the_study_s_optuna_search_and_stops_on_sigterm(logged_study, tmp_path):
    _, folder = logged_study
    port = free_port()
    log = tmp_path / "dashboard.log"
    home = tmp_path / "home"  # gunicorn would leave ~/.gunicorn/ here
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"} | {"HOME": str(home)}
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "study",
            "dashboard",
            "tracked",
            "--storage",
            str(folder),
            "--port",
            str(port),
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/studies", timeout=2) as reply:
                studies = json.loads(reply.read())["study_summaries"]
                break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(1)
    assert [s["study_name"] for s in studies] == ["tracked"]
    deadline = time.monotonic() + 30  # printed once the port answered: a poll's time later
    while f"optuna-dashboard at {url}" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # the command: it stops the dashboard's process group
    assert proc.wait(timeout=30) == 0
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)
    assert list(home.iterdir()) == []  # nothing left in the user's home


def test_logging_a_served_model_leaves_the_tracking_uri_as_it_was(monkeypatch):
    """MLflow's `set_tracking_uri` also sets $MLFLOW_TRACKING_URI, which every later command
    and child process would read: export points it at the study's store and puts it back."""
    import os

    from study.tracking.registry import TRACKING_URI_ENV, _tracking_uri

    monkeypatch.delenv(TRACKING_URI_ENV, raising=False)
    with _tracking_uri("sqlite:////tmp/elsewhere.db"):
        assert os.environ[TRACKING_URI_ENV] == "sqlite:////tmp/elsewhere.db"
    assert TRACKING_URI_ENV not in os.environ
    monkeypatch.setenv(TRACKING_URI_ENV, "http://127.0.0.1:5999")
    with _tracking_uri("sqlite:////tmp/elsewhere.db"):
        pass
    assert os.environ[TRACKING_URI_ENV] == "http://127.0.0.1:5999"


@pytest.mark.slow  # three interpreters importing MLflow: ~24 s of `make test-quick`
def test_processes_opening_one_new_store_at_once_all_succeed(tmp_path):
    """A sweep's driver and a `status` (or two sweeps in one home) opening one new SQLite store
    at once: MLflow makes the tables with no lock of its own, and all but one of them died in its
    migrations ("duplicate column name"). Three processes, released together once all are ready."""
    uri, go = f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "go"
    code = (
        "import pathlib, sys, time; import mlflow.tracking; from study import tracking\n"
        "pathlib.Path(sys.argv[3]).touch()\n"
        "while not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.005)\n"
        "print(tracking.study_names(sys.argv[2]))"
    )
    ready = [tmp_path / f"ready-{i}" for i in range(3)]
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", code, str(go), uri, str(r)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in ready
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(r.exists() for r in ready):
            assert all(p.poll() is None for p in procs) and time.monotonic() < deadline
            time.sleep(0.05)
        go.touch()
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0] * 3, [err[-1500:] for _, err in results]
    assert [out.strip() for out, _ in results] == ["[]"] * 3
