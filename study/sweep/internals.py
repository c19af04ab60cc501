"""Every touch of Ray's and Optuna's private internals, in one place: one function each, each
with a test in tests/test_internals.py that fails naming the touch when an upgrade changes what
it relies on. Written against the versions `pyproject.toml` pins (ray 2.59–2.60, optuna 5.0,
mlflow 3.17).

MLflow's one private touch (the global tracking URI, put back after `log_model`) stays behind the
package that alone talks to MLflow: `study.tracking.registry._tracking_uri`, tested here too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def set_save_period(rule: Callable[[float], float]) -> None:
    """Tune's adaptive period between saves of its state ("auto", `TUNE_GLOBAL_CHECKPOINT_S`'s
    default: max(10 s, 19 × the last save's seconds)) becomes `rule(the last save's seconds)`;
    a period the user fixed stays.

    Touches `ray.tune.execution.experiment_state._ExperimentCheckpointManager.
    _update_auto_checkpoint_time(self, time_taken)`, which sets `self._checkpoint_period` after
    each save when `self._auto_checkpoint_enabled`."""
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager as manager

    def update(self, time_taken: float) -> None:
        if self._auto_checkpoint_enabled:
            self._checkpoint_period = rule(time_taken)

    manager._update_auto_checkpoint_time = update


def asha_milestones(asha: Any) -> list[float]:
    """The epochs (floats: grace × factor^k) of an AsyncHyperBandScheduler's rungs, where it may
    stop a trial. Touches `asha._brackets[0]._rungs`, a list of (milestone, recorded) pairs."""
    return [milestone for milestone, _ in asha._brackets[0]._rungs]


def asha_brackets(asha: Any) -> list:
    """An AsyncHyperBandScheduler's brackets (`asha._brackets`), which hold its rungs."""
    return asha._brackets


def use_asha_brackets(asha: Any, brackets: list) -> None:
    """Make `brackets` the ones the scheduler assigns the next trial it is given to
    (`on_trial_add` picks one of `asha._brackets`)."""
    asha._brackets = brackets


def optuna_study(search: Any) -> Any:
    """The `optuna.Study` an OptunaSearch asks and tells (`search._ot_study`)."""
    return search._ot_study


def optuna_trials(search: Any) -> dict[str, Any]:
    """An OptunaSearch's Tune trial id -> `optuna.Trial` (`search._ot_trials`)."""
    return search._ot_trials


def completed_trials(search: Any) -> set[str]:
    """The Tune trial ids an OptunaSearch has told Optuna the end of
    (`search._completed_trials`)."""
    return search._completed_trials


def session_dir() -> str:
    """This process's Ray session folder ('' when it has none): the local Ray's logs and the
    driver's staging folders live under it. Touches `ray._private.worker._global_node`."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    return node.get_session_dir_path() if node is not None and ray.is_initialized() else ""


@contextlib.contextmanager
def ray_in_own_process_groups() -> Iterator[None]:
    """Ray started meanwhile puts each of its processes in a process group of its own. Ray starts
    every process through `ray._private.services.ConsolePopen` and has no option for this."""
    from ray._private import services

    plain = services.ConsolePopen

    class OwnGroupPopen(plain):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, process_group=0, **kwargs)

    services.ConsolePopen = OwnGroupPopen
    try:
        yield
    finally:
        services.ConsolePopen = plain


def staging_folder(trial: Any) -> Path:
    """The driver's staging folder, where Tune writes its state and the trials' logs before it
    copies them into the study folder (`trial.storage.experiment_driver_staging_path`, a
    developer API of Ray Train's StorageContext)."""
    return Path(trial.storage.experiment_driver_staging_path)


def trial_results_file(trial: Any) -> tuple[Any, str]:
    """(filesystem, path) of a trial's `result.json` in the study folder, as Tune reads it
    (`trial.storage.storage_filesystem`, `trial.storage.trial_fs_path`)."""
    return trial.storage.storage_filesystem, f"{trial.storage.trial_fs_path}/result.json"


def trial_folder_name(trial: Any) -> str:
    """The name of a trial's folder in the study folder (`trial.storage.trial_dir_name`)."""
    return trial.storage.trial_dir_name


def validate_cluster_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A cluster launcher config with the provider's defaults filled in, checked against Ray's
    JSON schema: `ray.autoscaler._private.util.prepare_config` and `validate_config` (no public
    twin). Raises what they raise."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(raw)
    validate_config(prepared)
    return prepared
