"""The MLflow UI in a real headless Chromium: the study's runs are listed, a picture is shown, an
exported winner's registry version shows its signature.

Chromium comes from Debian's packages (`make browser`, run by `make test`). Set
AESTUDY_SCREENSHOTS=DIR to keep the screenshots (docs/ holds the committed ones).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from analysis.screenshots import chromium, served
from analysis.screenshots import main as screenshots
from study.tracking import alias_version, artifact_page, trial_runs, version_page
from tests.harness.studies import write_space
from tests.harness.tool import run_here

pytestmark = pytest.mark.slow


@pytest.fixture
def ui(tmp_path, local_ray, monkeypatch):
    """A two-trial study in ./mlflow.db, served by `python -m study ui` on 127.0.0.1 (started
    as `make screenshots` starts it: `analysis.screenshots.served`)."""
    space = write_space(
        tmp_path,
        search={"algorithm": "grid"},
        num_samples=1,
        epochs=2,
        scheduler={"type": "none"},
        params={"model": ["ae", "vae"], "latent_dim": [2]},
    )
    result = run_here(
        "sweep",
        str(space),
        "--name",
        "browsed",
        "--storage",
        str(tmp_path),
        "--max-concurrent",
        "1",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [line for line in result.stdout.splitlines() if "trials in the MLflow UI: " in line]
    assert len(printed) == 2  # at the start and in the summary
    page = printed[-1].split("trials in the MLflow UI: ")[1].split()[0]
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)  # whatever the UI writes beside it lands here
    with served(store) as port:
        yield f"http://127.0.0.1:{port}", store, page.replace(":5000/", f":{port}/")


def test_mlflow_ui_lists_the_runs_and_shows_a_reconstruction(ui, tmp_path, capsys):
    url, store, runs_page = ui
    runs = trial_runs(store, "browsed")
    experiment = runs["experiment_id"].iloc[0]
    names = list(runs["tags.mlflow.runName"])
    # the page the sweep printed: the runs table of the trials, sorted by the objective
    dom = chromium(runs_page, tmp_path / "profile", "--dump-dom")
    for name in names:
        assert name in dom, f"run {name} is not listed in the UI"
    assert "study browsed" not in dom  # the study's own run is filtered out
    # columns: the model, the searched parameter, the objective (sorted by), state and epochs
    for column in (
        "params.`model`",
        "params.`latent_dim`",
        "metrics.`val_mse`",
        "tags.`aestudy.state`",
        "tags.`aestudy.epochs`",
    ):
        assert f'col-id="{column}"' in dom, column
    vae = runs[runs["tags.aestudy.model"] == "vae"]["run_id"].iloc[0]
    port = int(url.rsplit(":", 1)[1])
    picture_page = artifact_page(store, experiment, vae, "reconstructions.png", port)
    assert picture_page.endswith("?workflowType=machine_learning")  # not GenAI's layout
    dom = chromium(picture_page, tmp_path / "profile", "--dump-dom")
    assert '<img alt="reconstructions.png" src="blob:' in dom  # the UI fetched and shows the PNG

    # an exported winner: its registry version page shows the model's signature (784 pixels in)
    exported = run_here("export", "browsed", "--out", str(tmp_path / "exported"), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    champion = alias_version(store, "browsed", "champion")
    registry_page = version_page(store, "browsed", champion, port)
    dom = chromium(registry_page, tmp_path / "profile", "--dump-dom")
    assert "champion" in dom and "784" in dom, "the version page shows no alias or signature"

    # docs/'s screenshots come from `python -m analysis.screenshots` (`make screenshots`): it
    # finds the winner and its registry version, here through the UI served above
    shots = Path(os.environ.get("AESTUDY_SCREENSHOTS", tmp_path / "shots"))
    assert screenshots(["browsed", "--out", str(shots), "--tracking-uri", url]) == 0
    taken = capsys.readouterr().out
    for name in ("mlflow-runs.png", "mlflow-reconstruction.png", "mlflow-model-version.png"):
        assert (shots / name).stat().st_size > 10_000, name
        assert str(shots / name) in taken
