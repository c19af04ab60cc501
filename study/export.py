"""Export the best trials of a study from MLflow: checkpoint, config, metrics, pictures, and a
version in the MLflow Model Registry with the alias `champion` (or `champion-<model>`)."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import models
from models import ConfigError
from models.checkpoint import check_out_folder
from study import tracking
from study.metrics import SCORES, TEST_METRICS
from study.ranking import rank, uncrowned, winners
from study.status import StudyView

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
    registered: str  # models:/<study>@<alias>
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

    "Best" is `study.ranking`'s rule, the one every view uses; degenerate trials are never
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
            f"(see `python -m study status {study}`)"
        )
    prefix = "champion" if metric == view.objective else f"best-{metric}"
    if force:
        clear_earlier_export(out)
    exported = []
    for _, row in picks.iterrows():
        label = row["model"] if per_model else "best"
        alias = prefix if label == "best" else f"{prefix}-{label}"
        exported.append(_export_one(uri, study, label, alias, row, metric, out / label))
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


def _export_one(
    uri: str, study: str, label: str, alias: str, row: Any, metric: str, folder: Path
) -> Exported:
    client = tracking.client(uri)
    run = client.get_run(row["run_id"])
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        downloaded = client.download_artifacts(run.info.run_id, "", tmp)
        shutil.copytree(downloaded, folder)
    if not (folder / CHECKPOINT / models.checkpoint.CONFIG_FILE).is_file():
        raise ConfigError(f"trial run {run.info.run_id} has no checkpoint artifact to export")
    models.load(folder / CHECKPOINT)  # refuse to register something that does not load
    record = {
        "study": study,
        "run_id": run.info.run_id,
        "trial_id": row["trial_id"],
        "model": row["model"],
        "state": row["state"],
        "standing": row["standing"] or "full budget",
        "epochs_trained": int(row["epoch"]),
        "ranked_by": f"{metric} on the validation split",
        # the split nobody selected on: the number to report for this winner
        "test": {k: run.data.metrics[k] for k in TEST_METRICS if k in run.data.metrics},
        "metrics": {k: v for k, v in sorted(run.data.metrics.items()) if not math.isnan(v)},
        "params": dict(sorted(run.data.params.items())),
    }
    (folder / "metrics.json").write_text(json.dumps(record, indent=2))
    tags = {"trial_id": str(row["trial_id"]), "standing": record["standing"],
            metric: f"{row[metric]:.6g}", "epochs_trained": str(record["epochs_trained"]),
            **{k: f"{v:.6g}" for k, v in record["test"].items()}}  # fmt: skip
    source = f"{run.info.artifact_uri}/{CHECKPOINT}"
    _register(client, study, source, run.info.run_id, alias, tags)
    return Exported(label, run.info.run_id, str(row["trial_id"]), metric, float(row[metric]),
                    row["standing"], folder, f"models:/{study}@{alias}", record["test"])  # fmt: skip


def _register(
    client: Any, name: str, source: str, run_id: str, alias: str, tags: dict[str, str]
) -> None:
    """Point `alias` at the run's model version, creating the version only the first time: the
    same run exported again adds no version."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"best checkpoints of study {name}")
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    version = next((v for v in found if v.source == source), None)
    if version is None:
        version = client.create_model_version(name, source, run_id=run_id, tags=tags)
    else:
        for key, value in tags.items():
            client.set_model_version_tag(name, version.version, key, value)
    client.set_registered_model_alias(name, alias, version.version)


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
    run_id, artifact = _resolve(uri, text)
    with tempfile.TemporaryDirectory() as tmp:
        return models.load(tracking.client(uri).download_artifacts(run_id, artifact, tmp))


def _resolve(uri: str, text: str) -> tuple[str, str]:
    """(run id, artifact path) of a `models:/` or `runs:/` URI in the store at `uri`."""
    from mlflow.exceptions import MlflowException

    client = tracking.client(uri)
    if text.startswith("runs:/"):
        run_id, _, artifact = text.removeprefix("runs:/").partition("/")
        return run_id, artifact or CHECKPOINT
    name, at, alias = text.removeprefix("models:/").partition("@")
    try:
        if at:
            version = client.get_model_version_by_alias(name, alias)
        else:
            name, _, number = name.partition("/")
            version = client.get_model_version(name, number)
    except MlflowException as exc:
        raise ConfigError(f"{text}: not in the registry of {uri} ({exc.message})") from None
    return version.run_id, CHECKPOINT
