"""Export the best trials of a study from MLflow: checkpoint, config, metrics, pictures, and a
version in the MLflow Model Registry with the alias `champion` (or `champion-<model>`)."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import models
from models import ConfigError
from models.checkpoint import check_out_folder
from models.serving import Encoder, Reconstructor
from study import tracking
from study.hints import study_command
from study.tracking import ENCODE, RECONSTRUCT
from study.trial.data import mnist_test_digits
from study.trial.metrics import SCORES, TEST_METRICS
from study.trial.ranking import rank, uncrowned, winners
from study.views.status import StudyView

CHECKPOINT = "checkpoint"


@dataclass
class Exported:
    """One exported trial."""

    label: str  # "best" or the model type
    run_id: str
    trial_id: str
    metric: str
    value: float
    standing: str  # "" for a full-budget trial, else e.g. "stopped early at epoch 2"
    folder: Path
    registered: list[str]  # models:/<study>@<alias>, one per alias
    test: dict[str, float]  # the test split's numbers: what to report for this winner


def export_best(
    uri: str,
    study: str,
    out: str | Path,
    per_model: bool = False,
    metric: str | None = None,
    force: bool = False,
) -> tuple[list[Exported], dict[str, str]]:
    """Write the best trial (or the best of each model type) to `out` and register it; returns
    what was exported and, per model type, why none of its trials was (with `per_model`).

    "Best" is `study.trial.ranking`'s rule, the one every view uses; degenerate trials are never
    exported. The study's objective names the aliases `champion[-<model>]`; any other metric
    `best-<metric>[-<model>]`, so ranking by another metric never moves the champions."""
    out = Path(out)
    if metric is not None:
        check_metric(metric)
    check_out_folder(out, force)
    view = StudyView(uri, study)
    metric = metric or view.objective
    ranked = rank(view.runs, metric)
    picks = winners(ranked, per_model)
    if not len(picks):
        raise ConfigError(
            f"study {study!r} has no finished, non-degenerate trial with {metric} to export "
            f"(see `{study_command(f'status {study}')}`)"
        )
    prefix = "champion" if metric == view.objective else f"best-{metric}"
    overall = winners(ranked, False)["run_id"].iloc[0]
    with tempfile.TemporaryDirectory(prefix="aestudy-export-") as tmp:
        # every winner downloaded and checked first: a refusal leaves `out` and the registry as
        # they were
        staged = [
            _stage(uri, study, row, metric, Path(tmp) / (row["model"] if per_model else "best"))
            for _, row in picks.iterrows()
        ]
        registered = [_register(uri, study, item, prefix, overall) for item in staged]
        # `out` is written last: a registry that fails leaves it as it was
        if force:
            clear_earlier_export(out)
        out.mkdir(parents=True, exist_ok=True)
        exported = [_move(item, out) for item in registered]
    return exported, uncrowned(ranked) if per_model else {}


def check_metric(metric: str) -> None:
    """A metric export may rank by: a score, and not one of the test split's."""
    if metric not in SCORES:
        raise ConfigError(f"--metric {metric!r}: not a score; choose one of {', '.join(SCORES)}")
    if metric in TEST_METRICS:
        raise ConfigError(
            f"--metric {metric}: test numbers report a winner, they never choose one (choosing on "
            f"them would make them validation numbers); rank by {_validation_twin(metric)}"
        )


def _validation_twin(test_metric: str) -> str:
    """The validation metric a test metric reports (test_mse -> val_mse)."""
    name = test_metric.removeprefix("test_")
    return f"val_{name}" if f"val_{name}" in SCORES else name


def clear_earlier_export(out: Path) -> None:
    """Remove the folders an earlier export wrote (a checkpoint and metrics.json); anything else
    in `out` is the user's and stays."""
    for folder in out.iterdir() if out.is_dir() else ():
        if (folder / CHECKPOINT).is_dir() and (folder / "metrics.json").is_file():
            shutil.rmtree(folder)


def _stage(uri: str, study: str, row: Any, metric: str, folder: Path) -> Exported:
    """Download a winner's artifacts into `folder`, refuse a checkpoint that does not load, and
    write its metrics.json; nothing is registered yet."""
    run_id = row["run_id"]
    run = tracking.run_data(uri, run_id)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(tracking.download_artifacts(uri, run_id, "", tmp), folder)
    if not (folder / CHECKPOINT / models.checkpoint.CONFIG_FILE).is_file():
        raise ConfigError(f"trial run {run_id} has no checkpoint artifact to export")
    models.load(folder / CHECKPOINT)  # refuse to register something that does not load
    record = {
        "study": study,
        "run_id": run_id,
        "trial_id": row["trial_id"],
        "model": row["model"],
        "state": row["state"],
        "standing": row["standing"] or "full budget",
        "epochs_trained": int(row["epoch"]),
        "ranked_by": f"{metric} on the validation split",
        # the split nobody selected on: the number to report for this winner
        "test": {k: run.metrics[k] for k in TEST_METRICS if k in run.metrics},
        "metrics": {k: v for k, v in sorted(run.metrics.items()) if not math.isnan(v)},
        "params": dict(sorted(run.params.items())),
    }
    (folder / "metrics.json").write_text(json.dumps(record, indent=2))
    return Exported(
        folder.name,
        run_id,
        str(row["trial_id"]),
        metric,
        float(row[metric]),
        row["standing"],
        folder,
        [],
        record["test"],
    )


def _register(uri: str, study: str, item: Exported, prefix: str, overall: str) -> Exported:
    """Register a staged winner as an MLflow Model with its aliases: the label's
    (`champion-<model>`, or `champion` for the single best), and `champion` too for the study's
    overall winner among the per-model ones; its metrics.json gets the registry's names."""
    folder = item.folder
    record = json.loads((folder / "metrics.json").read_text())
    aliases = [prefix if item.label == "best" else f"{prefix}-{item.label}"]
    if item.label != "best" and item.run_id == overall:
        aliases.append(prefix)
    tags = {
        "trial_id": item.trial_id,
        "standing": record["standing"],
        item.metric: f"{item.value:.6g}",
        "epochs_trained": str(record["epochs_trained"]),
        **{k: f"{v:.6g}" for k, v in item.test.items()},
    }
    model = models.load(folder / CHECKPOINT)
    served = {RECONSTRUCT: Reconstructor(model), ENCODE: Encoder(model)}
    version, encoder = tracking.publish(
        uri, study, item.run_id, served, example_digits(), aliases, tags
    )
    record["mlflow"] = {
        "models": [f"models:/{study}@{alias}" for alias in aliases],
        "version": version,
        "encoder": encoder,
    }
    (folder / "metrics.json").write_text(json.dumps(record, indent=2))
    return replace(item, registered=record["mlflow"]["models"])


def _move(item: Exported, out: Path) -> Exported:
    """A registered winner's folder, moved from its staging place into `out`."""
    folder = out / item.folder.name
    shutil.move(item.folder, folder)
    return replace(item, folder=folder)


def example_digits(n: int = 5) -> np.ndarray:
    """Real digits, flattened, for a served model's input example: the first of MNIST's test set."""
    return mnist_test_digits()[:n].reshape(n, -1).numpy()


def load_model(uri_or_path: str | Path, tracking_uri: str | None = None) -> models.AutoEncoder:
    """A model from an exported folder, a checkpoint folder, a registry URI
    (`models:/<study>@<alias>` or `models:/<study>/<version>`) or `runs:/<run_id>/checkpoint`.

    Registry and run URIs are read from `tracking_uri`, else the default store (see
    `tracking.resolve_tracking_uri`), whatever the current folder; nothing global is changed."""
    text = str(uri_or_path)
    if not text.startswith(("models:/", "runs:/")):
        path = Path(text)
        return models.load(path / CHECKPOINT if (path / CHECKPOINT).is_dir() else path)
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_reachable(uri, must_exist=True)
    try:
        run_id, artifact = tracking.resolve(uri, text, CHECKPOINT)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    with tempfile.TemporaryDirectory() as tmp:
        return models.load(tracking.download_artifacts(uri, run_id, artifact, tmp))
