"""A study's experiment and study run: created, read, listed and taken back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from models import ConfigError
from study.tracking.store import as_params, client, local_artifact_root
from study.tracking.tags import ROLE
from study.tracking.view import SHARED_VIEW_TAG, TRIALS_VIEW, trials_view
from study.trial.metrics import DEFAULT_OBJECTIVE


@dataclass(frozen=True)
class StudyRecord:
    """What a trial needs to log into its study: plain data, so Tune can pickle it."""

    uri: str
    study: str
    experiment_id: str
    study_run_id: str


def ensure_study(uri: str, study: str, description: str, params: dict[str, Any]) -> StudyRecord:
    """Get or create the study's experiment and study run (idempotent: resume calls it again)."""
    c = client(uri)
    experiment = c.get_experiment_by_name(study)
    if experiment is None:
        root = local_artifact_root(uri)
        location = f"{root}/{study}" if root else None
        # The kind tag makes MLflow 3's UI open on the runs table, not the GenAI overview.
        experiment_id = c.create_experiment(
            study,
            artifact_location=location,
            # the experiment's description in the UI: the space's own, and how it was launched
            tags={
                "mlflow.experimentKind": "custom_model_development",
                "mlflow.note.content": _description(description, params),
            },
        )
    else:
        experiment_id = experiment.experiment_id
    objective = str(params.get("objective", DEFAULT_OBJECTIVE))
    view = trials_view(
        objective, params.get("mode", "min") == "min", str(params.get("searched", "")).split(",")
    )
    c.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + TRIALS_VIEW, json.dumps(view))
    found = c.search_runs([experiment_id], f"tags.`{ROLE}` = 'study'", max_results=1)
    if found:
        return StudyRecord(uri, study, experiment_id, found[0].info.run_id)
    run = c.create_run(
        experiment_id,
        run_name=f"study {study}",
        tags={ROLE: "study", "mlflow.note.content": description},
    )
    c.log_batch(run.info.run_id, params=as_params(params))
    return StudyRecord(uri, study, experiment_id, run.info.run_id)


def _description(description: str, params: dict[str, Any]) -> str:
    space = params.get("space")
    launched = f"Launched as `python -m study sweep {space}`." if space else ""
    return "\n\n".join(part for part in (description, launched) if part)


def study_params(uri: str, study: str) -> dict[str, str]:
    """What the study was launched with (objective, searched parameters, …), from its study run."""
    c = client(uri)
    experiment = c.get_experiment_by_name(study)
    if experiment is None:
        raise ConfigError(f"no study {study!r} in the tracking store {uri}")
    found = c.search_runs([experiment.experiment_id], f"tags.`{ROLE}` = 'study'", max_results=1)
    return dict(found[0].data.params) if found else {}


def study_exists(uri: str, study: str) -> bool:
    """Whether the store holds an experiment of that name (deleted ones included: MLflow
    refuses to create another under a deleted one's name)."""
    return client(uri).get_experiment_by_name(study) is not None


def abandon_study(uri: str, study: str) -> None:
    """Take back the experiment of a launch that failed before any trial ran: renamed (so the
    name is free again: MLflow keeps a deleted experiment's name) and deleted."""
    c = client(uri)
    experiment = c.get_experiment_by_name(study)
    if experiment is None:
        return
    c.rename_experiment(experiment.experiment_id, f"{study}.abandoned-{experiment.experiment_id}")
    c.delete_experiment(experiment.experiment_id)


def study_names(uri: str) -> list[str]:
    """The studies in the store: experiments holding a study run, oldest first."""
    c = client(uri)
    experiments = sorted(c.search_experiments(), key=lambda e: e.creation_time or 0)
    return [
        e.name
        for e in experiments
        if c.search_runs([e.experiment_id], f"tags.`{ROLE}` = 'study'", max_results=1)
    ]


def experiment_id(uri: str, study: str) -> str:
    """The id of the study's experiment; ConfigError naming the store if it has none."""
    experiment = client(uri).get_experiment_by_name(study)
    if experiment is None:
        raise ConfigError(f"no study {study!r} in the tracking store {uri}")
    return experiment.experiment_id


def set_study_status(record: StudyRecord, status: str) -> None:
    """Mark the study run RUNNING while a sweep runs, FINISHED or KILLED when it ends."""
    if status == "RUNNING":
        client(record.uri).update_run(record.study_run_id, status="RUNNING")
    else:
        client(record.uri).set_terminated(record.study_run_id, status)


def log_report(record: StudyRecord, folder: str, path: str) -> None:
    """Attach a folder of files (the table, the plots) to the study run under `path`."""
    client(record.uri).log_artifacts(record.study_run_id, folder, path)
