"""The one place that talks to MLflow. No Ray here: the analysis scripts import it too.

Layout in MLflow: one **experiment per study** (named after it) holding one run per trial (tag
`aestudy.role = trial`) and one study run (tag `aestudy.role = study`: the space's settings, and
later the study's table and plots). An experiment per study keeps studies apart in the UI's
sidebar, in searches and in the registry's names. Trial runs are deliberately *not* children of
the study run: the MLflow UI folds children under their parent, and the whole point of the UI
here is to see and compare the trials side by side. Each trial run names its study run in the
tag `aestudy.study_run`.

A trial's run is found by its Tune trial id, so a retried or resumed trial continues its own run,
and an epoch already logged is never logged again.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from models import ConfigError
from study.config import full_config

ROLE, TRIAL_ID, STATE, ERROR = "aestudy.role", "aestudy.trial_id", "aestudy.state", "aestudy.error"
GIVEN = "aestudy.given"
PICTURES = "aestudy.pictures"  # the epoch a trial's pictures show (study.pictures)
# Metrics kept as a run's tag rather than a metric: the UI would chart the epoch count as if it
# were a result (its steps already are the epochs); the runs table shows the tag.
AS_TAGS = {"epoch": "aestudy.epochs"}
DEFAULT_DB = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
HOME_ENV = "AESTUDY_HOME"


def home() -> Path:
    """Where studies and the default tracking store live: $AESTUDY_HOME, else ~/.aestudy.

    One absolute place, so every command (and `load_model`) finds the same store and studies
    wherever it is run from."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".aestudy").expanduser().resolve()


def resolve_tracking_uri(uri: str | None) -> str:
    """The tracking URI with any SQLite path made absolute (trials run in other folders).

    Default: $MLFLOW_TRACKING_URI where set, else `sqlite:///<home()>/mlflow.db`.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / DEFAULT_DB}"
    if uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).expanduser().resolve()}"
    if uri.startswith(("http://", "https://", "databricks")):
        return uri.rstrip("/")
    raise ConfigError(
        f"--tracking-uri {uri!r}: use sqlite:///path/to/mlflow.db or http://host:port "
        "(the ./mlruns file store is gone from MLflow 3)"
    )


def local_artifact_root(uri: str) -> str | None:
    """Where a SQLite store keeps artifacts: `mlartifacts/` beside the database, absolute."""
    if not uri.startswith("sqlite:///"):
        return None  # a tracking server stores (and proxies) artifacts itself
    return (Path(uri.removeprefix("sqlite:///")).parent / ARTIFACTS_DIR).as_uri()


def check_reachable(uri: str, must_exist: bool = False) -> None:
    """Fail with a clear message, before anything launches, if the store cannot be used.

    `must_exist`: a command that only reads (status, export, table, …) refuses a SQLite store
    that is not there rather than leave an empty database behind."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if must_exist and not db.is_file():
            raise ConfigError(
                f"no tracking store at {db}: run a sweep first, or point at the store with "
                f"--tracking-uri, MLFLOW_TRACKING_URI or {HOME_ENV}"
            )
        folder = db.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise ConfigError(f"tracking store {uri}: folder {folder} is missing or not writable")
        return
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=5) as reply:
            if reply.status == 200:
                return
            raise ConfigError(f"tracking server {uri} answered {reply.status} on /health")
    except (urllib.error.URLError, OSError) as exc:
        raise ConfigError(
            f"tracking server {uri} cannot be reached ({exc}); start one with "
            "`python -m study server` or fix --tracking-uri"
        ) from None


@cache
def client(uri: str):
    """An MlflowClient for `uri` (imported lazily: mlflow takes seconds to import)."""
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in logs
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


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
            tags={"mlflow.experimentKind": "custom_model_development"},
        )
    else:
        experiment_id = experiment.experiment_id
    objective = str(params.get("objective", "val_bce"))
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
    c.log_batch(run.info.run_id, params=_params(params))
    return StudyRecord(uri, study, experiment_id, run.info.run_id)


def run_tags(study: str, trial_id: str, config: dict[str, Any]) -> dict[str, str]:
    """Tags every trial run carries."""
    import ray
    import torch

    from study.trainer import resolve_device

    return {
        ROLE: "trial",
        TRIAL_ID: trial_id,
        "aestudy.study": study,
        "aestudy.model": str(config.get("model", "ae")),
        # the keys the trial was given (sampled or fixed), as opposed to model defaults: views
        # show a searched parameter only for the trials it applied to
        GIVEN: ",".join(sorted(config)),
        "aestudy.seed": str(config.get("seed", 0)),
        "aestudy.device": str(resolve_device(str(config.get("device", "auto")))),
        "aestudy.cpus": str(os.cpu_count()),
        "aestudy.host": platform.node(),
        "aestudy.git_commit": git_commit(),
        "aestudy.ray_version": ray.__version__,
        "aestudy.torch_version": torch.__version__,
    }


class TrialRun:
    """A trial's MLflow run: created once, continued by retries and resumes."""

    def __init__(
        self, record: StudyRecord, trial_id: str, config: dict[str, Any], tags: dict[str, str]
    ) -> None:
        self.client = client(record.uri)
        found = find_trial_run(self.client, record.experiment_id, trial_id)
        if found:
            self.run_id = found
            self.client.update_run(self.run_id, status="RUNNING")
            if STATE in self.client.get_run(found).data.tags:  # e.g. "interrupted": running again
                self.client.delete_tag(found, STATE)
        else:
            run = self.client.create_run(
                record.experiment_id,
                run_name=f"{config.get('model', 'ae')}-{trial_id}",
                tags={**tags, "aestudy.study_run": record.study_run_id},
            )
            self.run_id = run.info.run_id
            self.client.log_batch(self.run_id, params=_params(full_config(config)))
        history = self.client.get_metric_history(self.run_id, "train_loss")  # every epoch has it
        self.logged_epochs = {int(m.step) for m in history}

    def log_epoch(self, metrics: dict[str, float]) -> None:
        """Log one epoch's numeric metrics at step = epoch, unless that epoch is logged already;
        the epoch count goes to a tag (AS_TAGS)."""
        from mlflow.entities import Metric, RunTag

        epoch = int(metrics["epoch"])
        if epoch in self.logged_epochs:
            return
        now = int(time.time() * 1000)
        batch = [
            Metric(k, float(v), now, epoch)
            for k, v in metrics.items()
            if isinstance(v, int | float) and k not in AS_TAGS
        ]
        tags = [RunTag(tag, str(metrics[k])) for k, tag in AS_TAGS.items() if k in metrics]
        self.client.log_batch(self.run_id, metrics=batch, tags=tags)
        self.logged_epochs.add(epoch)

    def log_artifacts(self, folder: str | Path, path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(folder), path)

    def record_error(self, exc: BaseException) -> None:
        """Keep the latest error on the run (a retry that succeeds leaves it as history)."""
        self.client.set_tag(self.run_id, ERROR, f"{type(exc).__name__}: {exc}"[-4000:])


RUN_STATUS = {"failed": "FAILED", "interrupted": "KILLED"}  # else FINISHED


def finish_trial(
    uri: str, experiment_id: str, trial_id: str, state: str, reason: str | None = None
) -> None:
    """Close a trial's run with its state: done / stopped early (FINISHED), failed (FAILED) or
    interrupted (KILLED: `resume` reopens it).

    A failed trial's error is tagged on the run by the worker (`TrialRun.record_error`); `reason`
    (what the driver saw: a killed worker, a failed restore) is tagged when the worker could not."""
    c = client(uri)
    run_id = find_trial_run(c, experiment_id, trial_id)
    if run_id is None:
        return
    if reason and state == "failed" and ERROR not in c.get_run(run_id).data.tags:
        c.set_tag(run_id, ERROR, reason[-4000:])
    c.set_tag(run_id, STATE, state)
    c.set_terminated(run_id, RUN_STATUS.get(state, "FINISHED"))


def log_pictures(uri: str, run_id: str, folder: Path, epoch: int) -> None:
    """A trial's pictures (files in `folder`) and the epoch they show."""
    c = client(uri)
    c.log_artifacts(run_id, str(folder))
    c.set_tag(run_id, PICTURES, str(epoch))


def runs_without_pictures(uri: str, experiment_id: str) -> dict[str, str]:
    """Trial id -> run id of the study's trial runs that have no pictures yet."""
    runs = client(uri).search_runs([experiment_id], f"tags.`{ROLE}` = 'trial'", max_results=10000)
    return {
        r.data.tags[TRIAL_ID]: r.info.run_id
        for r in runs
        if PICTURES not in r.data.tags and TRIAL_ID in r.data.tags
    }


def mark_orphans(uri: str, experiment_id: str, known: set[str]) -> list[str]:
    """Close the trial runs Tune does not know: started by a driver killed before Tune saved the
    trial, they are not part of the study (resume ran the sample again as another trial). Their
    records stay, marked `orphaned`, out of every ranking. Returns their trial ids."""
    c = client(uri)
    orphans = []
    for run in c.search_runs([experiment_id], f"tags.`{ROLE}` = 'trial'", max_results=10000):
        trial_id = run.data.tags.get(TRIAL_ID)
        if trial_id in known or run.data.tags.get(STATE) == "orphaned":
            continue
        c.set_tag(run.info.run_id, STATE, "orphaned")
        c.set_tag(run.info.run_id, ERROR, "started by a driver killed before Tune saved this "
                  "trial: not part of the study (Tune ran the sample again as another trial)")  # fmt: skip
        if run.info.status == "RUNNING":
            c.set_terminated(run.info.run_id, "KILLED")
        orphans.append(trial_id)
    return orphans


def find_trial_run(c: Any, experiment_id: str, trial_id: str) -> str | None:
    """The run id of Tune trial `trial_id` in the study's experiment, if it has one yet."""
    found = c.search_runs([experiment_id], f"tags.`{TRIAL_ID}` = '{trial_id}'", max_results=1)
    return found[0].info.run_id if found else None


def study_params(uri: str, study: str) -> dict[str, str]:
    """What the study was launched with (objective, searched parameters, …), from its study run."""
    c = client(uri)
    experiment = c.get_experiment_by_name(study)
    if experiment is None:
        raise ConfigError(f"no study {study!r} in the tracking store {uri}")
    found = c.search_runs([experiment.experiment_id], f"tags.`{ROLE}` = 'study'", max_results=1)
    return dict(found[0].data.params) if found else {}


TRIALS_VIEW = "aestudy-trials"  # the experiment's shared view of its trials
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # MLflow 3's UI reads shared views from these tags


def trials_view(objective: str, ascending: bool, searched: list[str]) -> dict[str, Any]:
    """The runs table a study opens on: its trials only, sorted by the objective, with the
    model, the objective, the searched parameters, state and epochs as columns."""
    params = ["model", *[p for p in searched if p and p != "model"]]
    return {
        "orderByKey": f"metrics.`{objective}`",
        "orderByAsc": ascending,
        "searchFilter": f"tags.`{ROLE}` = 'trial'",
        "selectedColumns": [
            *[f"params.`{p}`" for p in params],
            f"metrics.`{objective}`",
            f"tags.`{STATE}`",
            f"tags.`{AS_TAGS['epoch']}`",
        ],
    }


def runs_page(
    uri: str, experiment_id: str, objective: str, ascending: bool, port: int = 5000
) -> str:
    """The MLflow UI's page of a study's trials. MLflow 3.17's URL cannot choose columns, but a
    shared view (an experiment tag, set by `ensure_study`) can: the page opens on the runs table
    (not the GenAI overview) with the study's run filtered out, sorted by the objective, the
    searched parameters as columns (checked in headless Chromium). Studies made before the view
    existed get the same page from URL state, without the columns. A SQLite store is served by
    `study ui` on `port`."""
    from urllib.parse import quote

    base = uri if uri.startswith("http") else f"http://127.0.0.1:{port}"
    tags = client(uri).get_experiment(experiment_id).tags
    if SHARED_VIEW_TAG + TRIALS_VIEW in tags:
        query = f"workflowType=machine_learning&viewStateShareKey={TRIALS_VIEW}"
    else:
        query = (
            "workflowType=machine_learning"
            f"&orderByKey={quote(f'metrics.`{objective}`')}&orderByAsc={str(ascending).lower()}"
            f"&searchFilter={quote(f'tags.`{ROLE}` = {chr(39)}trial{chr(39)}')}"
        )
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"


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


def trial_runs(uri: str, study: str):
    """All trial runs of a study as a pandas DataFrame in `mlflow.search_runs`'s layout (run_id,
    experiment_id, status, start_time, end_time, tags.*, params.*, metrics.*).

    Read through a client of its own: `mlflow.set_tracking_uri` would set MLFLOW_TRACKING_URI in
    this process's environment, and every process it starts later would log to this store."""
    import pandas as pd

    c = client(uri)
    experiment = c.get_experiment_by_name(study)
    if experiment is None:
        raise ConfigError(f"no study {study!r} in the tracking store {uri}")
    rows, token = [], None
    while True:
        page = c.search_runs(
            [experiment.experiment_id], f"tags.`{ROLE}` = 'trial'", max_results=1000,
            page_token=token,
        )  # fmt: skip
        for run in page:
            rows.append({
                "run_id": run.info.run_id,
                "experiment_id": run.info.experiment_id,
                "status": run.info.status,
                "start_time": run.info.start_time,
                "end_time": run.info.end_time,
                **{f"tags.{k}": v for k, v in run.data.tags.items()},
                **{f"params.{k}": v for k, v in run.data.params.items()},
                **{f"metrics.{k}": v for k, v in run.data.metrics.items()},
            })  # fmt: skip
        token = page.token
        if not token:
            return pd.DataFrame(rows)


@cache
def git_commit() -> str:
    """The project's git commit, or 'unknown' outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _params(values: dict[str, Any]):
    from mlflow.entities import Param

    return [Param(k, str(v)) for k, v in sorted(values.items()) if v is not None]
