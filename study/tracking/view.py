"""The page of the MLflow UI a study opens on: its trials, sorted by the objective."""

from __future__ import annotations

from typing import Any

from study.tracking.store import client
from study.tracking.tags import AS_TAGS, ROLE, STATE

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

    base = ui_address(uri, port)
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


def ui_address(uri: str, port: int = 5000) -> str:
    """Where the MLflow UI of the store at `uri` answers: a tracking server is its own UI; a
    SQLite store is served by `study ui` on `port`."""
    return uri if uri.startswith("http") else f"http://127.0.0.1:{port}"


def artifact_page(uri: str, experiment_id: str, run_id: str, path: str, port: int = 5000) -> str:
    """The MLflow UI's page of one artifact of a run (a picture is shown), in the UI's model
    training layout rather than GenAI's."""
    return (
        f"{ui_address(uri, port)}/#/experiments/{experiment_id}/runs/{run_id}/artifactPath/{path}"
        "?workflowType=machine_learning"
    )


def version_page(uri: str, name: str, version: str, port: int = 5000) -> str:
    """The MLflow UI's page of a registered model's version: its aliases, tags and signature."""
    return (
        f"{ui_address(uri, port)}/#/models/{name}/versions/{version}?workflowType=machine_learning"
    )
