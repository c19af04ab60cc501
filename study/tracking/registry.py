"""Winners in MLflow's Model Registry, as MLflow Models that load without this project.

Each exported trial gets two logged models on its run, both MLflow's PyTorch flavour saved as
`pt2` (`torch.export`: a traced graph and raw tensors, no pickled code, so MLflow's default
refusal of pickle deserialization holds): `reconstruct` (digits -> reconstructions), which the
registry version points at, and `encode` (digits -> latent codes), named in the version's tag
`encoder`. Exporting the same run again logs nothing new and adds no version: the aliases move.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from study.tracking.store import client

if TYPE_CHECKING:  # for annotations only
    import numpy as np
    import torch

RECONSTRUCT, ENCODE = "reconstruct", "encode"
ENCODER_TAG = "encoder"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


def publish(
    uri: str,
    name: str,
    run_id: str,
    served: dict[str, torch.nn.Module],
    example: np.ndarray,
    aliases: list[str],
    tags: dict[str, str],
) -> tuple[str, str]:
    """Register the run's `served` modules (`RECONSTRUCT` and `ENCODE`) under `name` with
    `aliases`, logging them first unless an earlier export did; returns the registry version
    and the encoder's model URI."""
    c = client(uri)
    _ensure_registered(c, name)
    version = _served_version(c, name, run_id)
    if version is None:
        with _tracking_uri(uri):  # logging and the SQL registry's lookup both use it
            uris = _log_served(c, run_id, served, example)
            version = c.create_model_version(
                name,
                uris[RECONSTRUCT],
                run_id=run_id,
                tags={**tags, ENCODER_TAG: uris[ENCODE]},
                model_id=uris[RECONSTRUCT].removeprefix("models:/"),
            )
    else:
        for key, value in tags.items():
            c.set_model_version_tag(name, version.version, key, value)
    for alias in aliases:
        c.set_registered_model_alias(name, alias, version.version)
    return version.version, c.get_model_version(name, version.version).tags[ENCODER_TAG]


def _ensure_registered(c: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
    except MlflowException:
        c.create_registered_model(name, description=f"best models of study {name}")


def _served_version(c: Any, name: str, run_id: str) -> Any | None:
    """The version an earlier export registered for this run's served models, if any."""
    found = c.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return next(
        (v for v in found if v.source.startswith("models:/") and ENCODER_TAG in v.tags), None
    )


def _log_served(
    c: Any, run_id: str, served: dict[str, torch.nn.Module], example: np.ndarray
) -> dict[str, str]:
    """Log each module as a pt2 MLflow Model on the run, in the run's experiment (under
    `_tracking_uri` of the client's store); returns name -> `models:/<model id>`."""
    import mlflow
    import torch

    experiment = c.get_run(run_id).info.experiment_id
    requirements = [f"torch=={torch.__version__.split('+')[0]}"]  # spares a slow inference
    uris = {}
    for name, module in served.items():
        logged = c.create_logged_model(experiment, name=name, source_run_id=run_id)
        info = mlflow.pytorch.log_model(
            module.eval(),
            name=name,
            model_id=logged.model_id,
            run_id=run_id,
            input_example=example,
            serialization_format="pt2",
            pip_requirements=requirements,
        )
        uris[name] = info.model_uri
    return uris


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's `log_model` writes to the global tracking URI, and its SQL registry's
    `create_model_version` looks the logged model up in that store, whatever store the client
    was made for (the default: ./mlflow.db in the working folder). Setting it also sets
    $MLFLOW_TRACKING_URI (which `resolve_tracking_uri` and every child process read): point it
    at `uri` for the duration, then put both back as they were."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    before, environment = utils._tracking_uri, os.environ.get(TRACKING_URI_ENV)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
        if environment is None:
            os.environ.pop(TRACKING_URI_ENV, None)
        else:
            os.environ[TRACKING_URI_ENV] = environment


def resolve(uri: str, text: str, default_artifact: str) -> tuple[str, str]:
    """(run id, artifact path) of a `models:/NAME@alias`, `models:/NAME/version` or
    `runs:/<run id>[/path]` URI in the store at `uri`; ValueError naming what is not there."""
    from mlflow.exceptions import MlflowException

    c = client(uri)
    if text.startswith("runs:/"):
        run_id, _, artifact = text.removeprefix("runs:/").partition("/")
        return run_id, artifact or default_artifact
    name, at, alias = text.removeprefix("models:/").partition("@")
    try:
        if at:
            version = c.get_model_version_by_alias(name, alias)
        else:
            name, _, number = name.partition("/")
            version = c.get_model_version(name, number)
    except MlflowException as exc:
        raise ValueError(f"{text}: not in the registry of {uri} ({exc.message})") from None
    return version.run_id, default_artifact


def alias_version(uri: str, name: str, alias: str) -> str | None:
    """The version of registered model `name` that `alias` points at, if both exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client(uri).get_model_version_by_alias(name, alias).version
    except MlflowException:
        return None
