"""How a study proposes trials (Optuna's TPE or random sampler, or a grid) and which it stops
early (ASHA), as Ray Tune objects."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.search.optuna import OptunaSearch

from study.space import Space, SpaceSampler
from study.trainable import FAILED

OPTUNA_DB = "optuna.db"  # the sampler's study, in the study folder


def stop_epochs(space: Space) -> tuple[int, ...]:
    """The epochs where ASHA may stop a trial: its rungs, grace × factor^k below the last epoch."""
    if space.scheduler["type"] == "none":
        return ()
    rungs, epoch = [], space.scheduler["grace_period"]
    while epoch < space.max_epochs:
        rungs.append(int(epoch))
        epoch *= space.scheduler["reduction_factor"]
    return tuple(rungs)


def param_space(space: Space) -> dict[str, Any]:
    """Tune's param_space: a grid's points, or nothing (Optuna's sampler supplies each config)."""
    if space.algorithm == "grid":
        return {"point": tune.grid_search([space.trial_config(pt) for pt in space.grid()])}
    return {}  # Optuna's define-by-run sampler supplies the whole config


def searcher(space: Space, name: str, folder: Path) -> ResumableOptunaSearch:
    """Optuna's sampler over the space, its study kept in the study folder (`resume` reopens it)."""
    import optuna

    seed = space.seed
    sampler = (
        optuna.samplers.TPESampler(seed=seed)
        if space.algorithm == "tpe"
        else optuna.samplers.RandomSampler(seed=seed)
    )
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder / OPTUNA_DB}")
    return ResumableOptunaSearch(
        space=SpaceSampler(space),
        metric=space.objective,
        mode=space.mode,
        sampler=sampler,
        storage=storage,
        study_name=name,
    )


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch whose study lives in SQLite and so can be ahead of Tune's saved state.

    A driver killed after a trial finished but before Tune saved its experiment state leaves the
    trial COMPLETE in Optuna's database and RUNNING in Tune's; on resume Tune re-runs it from its
    checkpoint and reports again, which Optuna refuses (UpdateFinishedTrialError: seen here, and
    it ended the resumed sweep). The value Optuna holds already stands, so the repeat is dropped.
    (`on_trial_complete` already tolerates the same case.)
    """

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if result and result.get(FAILED):  # failed for good: FAIL in Optuna, not a NaN value
            return super().on_trial_complete(trial_id, None, error=True)
        return super().on_trial_complete(trial_id, result, error)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        with contextlib.suppress(UpdateFinishedTrialError):
            super().on_trial_result(trial_id, result)


def scheduler(space: Space):
    """ASHA over epochs (`training_iteration`) as the space sets it, or FIFO: no early stopping."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if space.scheduler["type"] == "none":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=space.max_epochs,
        grace_period=space.scheduler["grace_period"],
        reduction_factor=space.scheduler["reduction_factor"],
    )
