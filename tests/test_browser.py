"""The MLflow UI in a real headless Chromium: the study's runs are listed, a picture is shown, an
exported winner's registry version shows its signature.

Chromium comes from Debian's packages (`make browser`, run by `make test`). Set
AESTUDY_SCREENSHOTS=DIR to keep the screenshots (docs/ holds the committed ones).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from study.tracking import trial_runs
from tests.conftest import PYTHON, free_port, home_env, run_cli, wait_until_healthy
from tests.test_sweep import write_space

pytestmark = pytest.mark.ray

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,900", "--virtual-time-budget=20000",
]  # fmt: skip


def chromium(url: str, profile: Path, *args: str) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "Chromium is missing: run `make browser` (apt-get install chromium)"
    out = subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return out.stdout


@pytest.fixture
def ui(tmp_path):
    """A two-trial study in ./mlflow.db, served by `python -m study ui` on 127.0.0.1."""
    space = write_space(tmp_path, search={"algorithm": "grid"}, num_samples=1, epochs=2,
                        scheduler={"type": "none"}, params={"model": ["ae", "vae"], "latent_dim": [2]})  # fmt: skip
    result = run_cli(
        "sweep", str(space), "--name", "browsed", "--storage", str(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [line for line in result.stdout.splitlines() if "trials in the MLflow UI: " in line]
    assert len(printed) == 2  # at the start and in the summary
    page = printed[-1].split("trials in the MLflow UI: ")[1].split()[0]
    port = free_port()
    log = tmp_path / "ui.log"
    proc = subprocess.Popen([PYTHON, "-m", "study", "ui", "--port", str(port)], cwd=tmp_path,
                            env=home_env(tmp_path), stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, proc, log)
    yield url, f"sqlite:///{tmp_path / 'mlflow.db'}", page.replace(":5000/", f":{port}/")
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def test_mlflow_ui_lists_the_runs_and_shows_a_reconstruction(ui, tmp_path):
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
    for column in ("params.`model`", "params.`latent_dim`", "metrics.`val_mse`",
                   "tags.`aestudy.state`", "tags.`aestudy.epochs`"):  # fmt: skip
        assert f'col-id="{column}"' in dom, column
    vae = runs[runs["tags.aestudy.model"] == "vae"]["run_id"].iloc[0]
    picture_page = (  # the query keeps the UI in its "Model training" layout, not GenAI's
        f"{url}/#/experiments/{experiment}/runs/{vae}/artifactPath/reconstructions.png"
        "?workflowType=machine_learning"
    )
    dom = chromium(picture_page, tmp_path / "profile", "--dump-dom")
    assert '<img alt="reconstructions.png" src="blob:' in dom  # the UI fetched and shows the PNG

    # an exported winner: its registry version page shows the model's signature (784 pixels in)
    exported = run_cli("export", "browsed", "--out", str(tmp_path / "exported"), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    version_page = f"{url}/#/models/browsed/versions/1"
    dom = chromium(version_page, tmp_path / "profile", "--dump-dom")
    assert "champion" in dom and "784" in dom, "the version page shows no alias or signature"

    shots = Path(os.environ.get("AESTUDY_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    for page, name in ((runs_page, "mlflow-runs.png"), (picture_page, "mlflow-reconstruction.png"),
                       (version_page, "mlflow-model-version.png")):  # fmt: skip
        chromium(page, tmp_path / "profile", f"--screenshot={shots / name}")
        assert (shots / name).stat().st_size > 10_000
