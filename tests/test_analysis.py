"""The comparison table, rebuilt from what a real sweep recorded in MLflow."""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest

from study.tracking import client, trial_runs
from tests.harness.studies import write_space
from tests.harness.tool import PYTHON, home_env, run_here


@pytest.fixture(scope="module")
def study(tmp_path_factory, local_ray):
    """ae twice (seeds 0 and 1: a repeat) and a vae whose lr makes it diverge (a failed trial)."""
    folder = tmp_path_factory.mktemp("analysed")
    space = write_space(
        folder,
        search={"algorithm": "grid"},
        num_samples=1,
        epochs=2,
        scheduler={"type": "none"},
        params={
            "model": ["ae", "vae"],
            "latent_dim": [3],
            "lr": {"values": [10000.0], "when": {"model": "vae"}},
            "seed": [0, 1],
        },
    )
    result = run_here(
        "sweep",
        str(space),
        "--name",
        "analysed",
        "--storage",
        str(folder),
        "--max-failures",
        "0",
        "--max-concurrent",
        "1",
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, f"sqlite:///{folder / 'mlflow.db'}"


def make_table(folder, out, *extra, via_study=False):
    command = ["study", "table"] if via_study else ["analysis.table"]
    result = subprocess.run(
        [PYTHON, "-m", *command, "analysed", "--out", str(out), "--storage", str(folder), *extra],
        cwd=folder,
        env=home_env(folder),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return pd.read_csv(out / "table.csv")


def test_table_values_equal_what_mlflow_holds_with_repeats_averaged(study):
    folder, uri = study
    table = make_table(folder, folder / "report1")
    runs = trial_runs(uri, "analysed")
    ae = runs[(runs["tags.aestudy.model"] == "ae") & (runs["status"] == "FINISHED")]
    assert len(ae) == 2 and set(ae["params.seed"]) == {"0", "1"}
    assert list(table["model"]) == ["ae"]  # the vae failed: no row
    row = table.iloc[0]
    assert row["n"] == 2
    for metric in ("val_mse", "val_bce", "denoise_mse", "probe_acc"):
        assert row[metric] == pytest.approx(ae[f"metrics.{metric}"].mean(), rel=1e-5)
        assert row[f"{metric}_std"] == pytest.approx(ae[f"metrics.{metric}"].std(ddof=1), rel=1e-4)
    assert row["params"] == ae["metrics.params"].iloc[0] and row["epoch"] == 2
    text = (folder / "report1" / "table.md").read_text()
    assert "2 ran to their last epoch" in text and "2 failed" in text
    assert (
        " ± " in text and "0.0685" in text
    )  # repeats shown with deviation; the seed's numbers beside
    assert (folder / "report1" / "table.tex").read_text().startswith("\\begin{tabular}")


def test_failed_trials_are_recorded_as_failed_with_their_error(study):
    _, uri = study
    runs = trial_runs(uri, "analysed")
    failed = runs[runs["tags.aestudy.model"] == "vae"]
    assert len(failed) == 2 and set(failed["status"]) == {"FAILED"}
    assert all("training diverged in epoch 1" in e for e in failed["tags.aestudy.error"])


def test_two_runs_give_identical_files_and_are_logged_to_the_study_run(study):
    folder, uri = study
    make_table(folder, folder / "first")
    make_table(folder, folder / "second", via_study=True)
    first = sorted(p.name for p in (folder / "first").iterdir())
    assert first == sorted(p.name for p in (folder / "second").iterdir())
    assert {"table.md", "table.csv", "table.tex", "learning_curves.png"} <= set(first)
    assert "parallel_coordinates.png" not in first  # two compared trials: too few to plot
    for name in first:
        assert (folder / "first" / name).read_bytes() == (folder / "second" / name).read_bytes(), (
            name
        )
    c = client(uri)
    experiment = c.get_experiment_by_name("analysed").experiment_id
    study_run = c.search_runs([experiment], "tags.`aestudy.role` = 'study'")[0]
    assert {"report/table.md", "report/table.csv"} <= {
        a.path for a in c.list_artifacts(study_run.info.run_id, "report")
    }


def test_table_of_an_unknown_study_is_a_clear_error(tmp_path, cli_here):
    result = cli_here("table", "nope", "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2 and "no tracking store at" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()  # nothing left behind
    (tmp_path / "other").mkdir()
    result = cli_here("status", "nope", cwd=tmp_path / "other")
    assert result.returncode == 2 and "no tracking store at" in result.stderr
    assert list(tmp_path.rglob("mlflow.db")) == []


def test_status_shows_a_failed_trial_s_reason(study, cli_here):
    folder, _ = study
    status = cli_here("status", "analysed", "--storage", str(folder), cwd=folder)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    failed = [i for i, line in enumerate(lines) if " failed " in line and " vae " in line]
    assert len(failed) == 2
    for i in failed:
        assert (
            lines[i + 1]
            .strip()
            .startswith("reason: TrainingDiverged: training diverged in epoch 1")
        )
        # a divergence ends the trial without raising into Tune: no error file, no retry
        assert not lines[i + 2].strip().startswith("full error:")
    assert not list(folder.glob("analysed/vae_*/error.txt"))


def test_a_plot_of_full_budget_trials_names_the_model_types_it_leaves_out(tmp_path):
    """After a quickstart whose every CAE was stopped early, three plots could show no CAE:
    each says so under the picture, with the states of that type's trials."""
    from analysis.plots import left_out, objective_vs_latent

    runs = pd.DataFrame(
        {
            "model": ["ae"] * 5 + ["cae", "cae"],
            "state": ["done"] * 5 + ["stopped early", "failed"],
            "latent_dim": [2, 4, 8, 16, 32, 8, 8],
            "val_mse": [0.05, 0.04, 0.03, 0.02, 0.02, 0.06, None],
        }
    )
    done = runs[runs["state"] == "done"]
    note = left_out(runs, done)
    assert note.startswith(
        "full-budget trials only: 1 stopped early not shown; "
        "no full-budget trial, not shown: cae (failed, stopped early)"
    )
    assert left_out(done, done) == ""
    assert (
        objective_vs_latent(done, "val_mse", tmp_path, note) == tmp_path / "objective_vs_latent.png"
    )
    assert (tmp_path / "objective_vs_latent.png").stat().st_size > 10_000


def test_status_shows_the_best_trials_and_says_how_to_see_every_one(study, capsys):
    """A study of thousands of trials prints the best few, not thousands of lines."""
    from study.views.status import print_status

    _, uri = study
    print_status(uri, "analysed", limit=1)
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if line.startswith("   1  ")]) == 1  # rank 1 only
    assert not [line for line in lines if line.startswith("   2  ")]
    assert len([line for line in lines if " failed " in line and " vae " in line]) == 1
    (hidden,) = [line for line in lines if "not shown" in line]
    assert hidden.startswith("1 more ranked trials and 1 more failed trials not shown: `")
    assert hidden.endswith(" -m study status analysed --all`")
    print_status(uri, "analysed")  # every trial
    out = capsys.readouterr().out
    assert "   2  " in out and "not shown" not in out
