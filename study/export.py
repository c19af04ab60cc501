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
from study import tracking
from study.space import OBJECTIVES

CHECKPOINT = "checkpoint"


@dataclass
class Exported:
    """One exported trial."""

    label: str  # "best" or the model type
    run_id: str
    metric: str
    value: float
    folder: Path
    registered: str  # models:/<study>@<alias>


def export_best(
    uri: str, study: str, out: str | Path, per_model: bool = False, metric: str | None = None
) -> list[Exported]:
    """Write the best finished trial (or the best of each model type) to `out` and register it."""
    runs = tracking.trial_runs(uri, study)

    metric = metric or tracking.study_params(uri, study).get("objective", "val_bce")

    if metric not in OBJECTIVES:
        raise ConfigError(f"--metric {metric!r}: choose one of {', '.join(OBJECTIVES)}")
    column = f"metrics.{metric}"
    finished = runs[(runs["status"] == "FINISHED")] if len(runs) else runs
    if column in finished:
        finished = finished[finished[column].notna()]
    if not len(finished) or column not in finished:
        raise ConfigError(f"study {study!r} has no finished trial with {metric} to export")
    ascending = OBJECTIVES[metric] == "min"
    ranked = finished.sort_values([column, "run_id"], ascending=[ascending, True])
    if per_model:
        picks = [
            (model, group.iloc[0])
            for model, group in ranked.groupby("tags.aestudy.model", sort=True)
        ]
    else:
        picks = [("best", ranked.iloc[0])]
    out = Path(out)
    return [_export_one(uri, study, label, row, metric, out / label) for label, row in picks]


def _export_one(uri: str, study: str, label: str, row: Any, metric: str, folder: Path) -> Exported:
    client = tracking.client(uri)
    run = client.get_run(row["run_id"])
    if folder.exists():
        shutil.rmtree(folder)
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
        "trial_id": run.data.tags.get(tracking.TRIAL_ID),
        "model": run.data.tags.get("aestudy.model"),
        "state": run.data.tags.get(tracking.STATE),
        "metrics": {k: v for k, v in sorted(run.data.metrics.items()) if not math.isnan(v)},
        "params": dict(sorted(run.data.params.items())),
    }
    (folder / "metrics.json").write_text(json.dumps(record, indent=2))
    alias = "champion" if label == "best" else f"champion-{label}"
    _register(client, study, f"{run.info.artifact_uri}/{CHECKPOINT}", run.info.run_id, alias)
    return Exported(
        label,
        run.info.run_id,
        metric,
        float(row[f"metrics.{metric}"]),
        folder,
        f"models:/{study}@{alias}",
    )


def _register(client: Any, name: str, source: str, run_id: str, alias: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"best checkpoints of study {name}")
    version = client.create_model_version(name, source, run_id=run_id, tags={"alias": alias})
    client.set_registered_model_alias(name, alias, version.version)


def load_model(uri_or_path: str | Path, tracking_uri: str | None = None) -> models.AutoEncoder:
    """A model from an exported folder, a checkpoint folder or a `models:/<study>@<alias>` URI."""
    text = str(uri_or_path)
    if not text.startswith(("models:/", "runs:/")):
        path = Path(text)
        return models.load(path / CHECKPOINT if (path / CHECKPOINT).is_dir() else path)
    import mlflow

    mlflow.set_tracking_uri(tracking.resolve_tracking_uri(tracking_uri))
    mlflow.set_registry_uri(tracking.resolve_tracking_uri(tracking_uri))
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=tmp)
        return models.load(local)
