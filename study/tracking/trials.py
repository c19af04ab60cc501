"""A trial's run: created once, logged to every epoch, closed with its state, read back."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from functools import cache
from pathlib import Path
from typing import Any

from models import ConfigError
from study.tracking.store import as_params, client
from study.tracking.studies import StudyRecord
from study.tracking.tags import AS_TAGS, ERROR, GIVEN, PICTURES, ROLE, STATE, TRIAL_ID
from study.trial.config import full_config
from study.trial.states import ENDED, TrialState, read, shown


def run_tags(
    study: str, trial_id: str, config: dict[str, Any], environment: dict[str, str]
) -> dict[str, str]:
    """Tags every trial run carries; `environment` names what ran it (device, versions), which
    the trial knows and this package, free of torch and Ray, does not."""
    return {
        ROLE: "trial",
        TRIAL_ID: trial_id,
        "aestudy.study": study,
        "aestudy.model": str(config.get("model", "ae")),
        # the keys the trial was given (sampled or fixed), as opposed to model defaults: views
        # show a searched parameter only for the trials it applied to
        GIVEN: ",".join(sorted(config)),
        "aestudy.seed": str(config.get("seed", 0)),
        "aestudy.cpus": str(os.cpu_count()),
        "aestudy.host": platform.node(),
        "aestudy.git_commit": git_commit(),
        **environment,
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
            self.client.log_batch(self.run_id, params=as_params(full_config(config)))
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


RUN_STATUS = {TrialState.FAILED: "FAILED", TrialState.INTERRUPTED: "KILLED"}  # else FINISHED


def finish_trial(
    uri: str,
    experiment_id: str,
    trial_id: str,
    state: str,
    reason: str | None = None,
    degenerate: bool = False,
    below_pca: bool = False,
) -> None:
    """Close a trial's run with its state: done / stopped early (FINISHED), failed (FAILED) or
    interrupted (KILLED: `resume` reopens it). The state tag holds `status`'s words for it, so
    the MLflow UI says "degenerate" or "PCA better" where `status` does
    (`study.trial.states.shown`).

    A failed trial's error is tagged on the run by the worker (`TrialRun.record_error`); `reason`
    (what the driver saw: a killed worker, a failed restore) is tagged when the worker could not."""
    c = client(uri)
    run_id = find_trial_run(c, experiment_id, trial_id)
    if run_id is None:
        return
    if reason and state == TrialState.FAILED and ERROR not in c.get_run(run_id).data.tags:
        c.set_tag(run_id, ERROR, reason[-4000:])
    c.set_tag(run_id, STATE, shown(state, degenerate, below_pca))
    c.set_terminated(run_id, RUN_STATUS.get(state, "FINISHED"))


def log_final(
    uri: str, run_id: str, folder: Path, epoch: int, test_metrics: dict[str, float]
) -> None:
    """A trial's final report: its pictures (files in `folder`) and test numbers, both of its
    checkpoint at `epoch`; the PICTURES tag, set last, says the report is complete."""
    from mlflow.entities import Metric

    c = client(uri)
    c.log_artifacts(run_id, str(folder))
    now = int(time.time() * 1000)
    c.log_batch(run_id, metrics=[Metric(k, float(v), now, epoch) for k, v in test_metrics.items()])
    c.set_tag(run_id, PICTURES, str(epoch))


def runs_without_pictures(uri: str, experiment_id: str) -> dict[str, str]:
    """Trial id -> run id of the study's trial runs that have no pictures yet."""
    runs = all_trial_runs(client(uri), experiment_id)
    return {
        r.data.tags[TRIAL_ID]: r.info.run_id
        for r in runs
        if PICTURES not in r.data.tags and TRIAL_ID in r.data.tags
    }


def trials_closed_since(uri: str, experiment_id: str, since_ms: int) -> set[str]:
    """Trial ids whose runs were closed as ended (done, stopped early, failed) at or after
    `since_ms` (epoch milliseconds, the closing driver's clock)."""
    runs = all_trial_runs(client(uri), experiment_id)
    return {
        r.data.tags[TRIAL_ID]
        for r in runs
        if read(r.data.tags.get(STATE, "")) in ENDED
        and (r.info.end_time or 0) >= since_ms
        and TRIAL_ID in r.data.tags
    }


def mark_orphans(uri: str, experiment_id: str, known: set[str]) -> list[str]:
    """Close the trial runs Tune does not know: started by a driver killed before Tune saved the
    trial, they are not part of the study (resume ran the sample again as another trial). Their
    records stay, marked `orphaned`, out of every ranking. Returns their trial ids."""
    c = client(uri)
    orphans = []
    for run in all_trial_runs(c, experiment_id):
        trial_id = run.data.tags.get(TRIAL_ID)
        if trial_id in known or run.data.tags.get(STATE) == TrialState.ORPHANED:
            continue
        c.set_tag(run.info.run_id, STATE, str(TrialState.ORPHANED))
        c.set_tag(
            run.info.run_id,
            ERROR,
            "started by a driver killed before Tune saved this "
            "trial: not part of the study (Tune ran the sample again as another trial)",
        )
        if run.info.status == "RUNNING":
            c.set_terminated(run.info.run_id, "KILLED")
        orphans.append(trial_id)
    return orphans


def trial_run_id(uri: str, experiment_id: str, trial_id: str) -> str | None:
    """The run id of Tune trial `trial_id` in the study's experiment at `uri`, if it has one yet."""
    return find_trial_run(client(uri), experiment_id, trial_id)


def find_trial_run(c: Any, experiment_id: str, trial_id: str) -> str | None:
    """The run id of Tune trial `trial_id` in the study's experiment, if it has one yet."""
    found = c.search_runs([experiment_id], f"tags.`{TRIAL_ID}` = '{trial_id}'", max_results=1)
    return found[0].info.run_id if found else None


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
    rows = [
        {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "status": run.info.status,
            "start_time": run.info.start_time,
            "end_time": run.info.end_time,
            **{f"tags.{k}": v for k, v in run.data.tags.items()},
            **{f"params.{k}": v for k, v in run.data.params.items()},
            **{f"metrics.{k}": v for k, v in run.data.metrics.items()},
        }
        for run in all_trial_runs(c, experiment.experiment_id)
    ]
    return pd.DataFrame(rows)


def all_trial_runs(c: Any, experiment_id: str) -> list:
    """Every trial run of the study's experiment, page by page (MLflow caps one page)."""
    runs, token = [], None
    while True:
        page = c.search_runs(
            [experiment_id], f"tags.`{ROLE}` = 'trial'", max_results=1000, page_token=token
        )
        runs += page
        token = page.token
        if not token:
            return runs


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
