"""How a study proposes trials (Optuna's TPE or random sampler, or a grid) and which it stops
early (ASHA), as Ray Tune objects."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
import warnings
from typing import Any

from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.search.optuna import OptunaSearch

from study.sweep import internals, stopping
from study.sweep.folder import open_search
from study.sweep.progress import trial_state
from study.sweep.space import Space, SpaceSampler
from study.sweep.trainable import FAILED
from study.trial.config import flat_config
from study.trial.states import TrialState


def stop_epochs(space: Space) -> tuple[int, ...]:
    """The epochs where ASHA may stop a trial, read off the scheduler itself: a rung's
    milestone grace × factor^k is a float, and Ray records a trial there at its first result at
    or after it (so at ceil(milestone)); epochs from the last on are a trial's natural end."""
    asha = scheduler(space)
    if not isinstance(asha, AsyncHyperBandScheduler):
        return ()
    rungs = (math.ceil(milestone) for milestone in internals.asha_milestones(asha))
    return tuple(sorted({epoch for epoch in rungs if epoch < space.max_epochs}))


def param_space(space: Space) -> dict[str, Any]:
    """Tune's param_space: a grid's points, or nothing (Optuna's sampler supplies each config)."""
    if space.algorithm == "grid":
        return {"point": tune.grid_search([space.trial_config(pt) for pt in space.grid()])}
    return {}  # Optuna's define-by-run sampler supplies the whole config


def searcher(space: Space, name: str, storage: str) -> ResumableOptunaSearch:
    """Optuna's sampler over the space, its study kept in `storage` (`folder.search_storage`: a
    journal file in the study folder, or the team's PostgreSQL), where `resume` reopens it."""
    import optuna

    seed = space.seed
    sampler = (
        optuna.samplers.TPESampler(seed=seed)
        if space.algorithm == "tpe"
        else optuna.samplers.RandomSampler(seed=seed)
    )
    return ResumableOptunaSearch(
        space=SpaceSampler(space),
        metric=space.objective,
        mode=space.mode,
        sampler=sampler,
        storage=open_search(storage),
        study_name=name,
    )


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch whose Optuna study records what happened to each trial, in its own storage.

    States: a trial ASHA stopped is PRUNED (its intermediate values kept), so TPE and parameter
    importance do not take an early value for a final one; a trial that failed for good is FAIL;
    a finished one COMPLETE with its last value (OptunaSearch alone marks all three COMPLETE or
    gives a NaN value). Each Optuna trial carries user attributes naming its Tune trial and
    MLflow run.

    Kept apart from Tune's state, it can be ahead of it: a driver killed after a trial
    finished but before Tune saved its state leaves the trial finished in Optuna and RUNNING in
    Tune; resumed, Tune re-runs it and reports again, which Optuna refuses
    (UpdateFinishedTrialError). The value Optuna holds already stands, so the repeat is dropped.
    """

    def suggest(self, trial_id: str):
        return while_the_database_is_down(super().suggest, trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        while_the_database_is_down(self._complete, trial_id, result, error)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        while_the_database_is_down(self._result, trial_id, result)

    def _complete(self, trial_id: str, result: dict | None, error: bool):
        if result and result.get(FAILED):  # failed for good: FAIL in Optuna, not a NaN value
            return super().on_trial_complete(trial_id, None, error=True)
        if error or not result or trial_id in internals.completed_trials(self):
            return super().on_trial_complete(trial_id, result, error)
        # Tune hands the result a scheduler stops a trial on (ASHA's rung, or its last epoch) to
        # on_trial_complete only: record it as an intermediate value too, so the Optuna trial
        # holds its whole curve.
        if self._reported().get(trial_id) != result.get("training_iteration"):
            self._result(trial_id, result)
        if _stopped(result):
            return self._prune(trial_id)
        return super().on_trial_complete(trial_id, result, error)

    def _prune(self, trial_id: str) -> None:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        with contextlib.suppress(UpdateFinishedTrialError):
            study, trials = internals.optuna_study(self), internals.optuna_trials(self)
            study.tell(trials[trial_id], state=TrialState.PRUNED)
        internals.completed_trials(self).add(trial_id)

    def _result(self, trial_id: str, result: dict) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        with contextlib.suppress(UpdateFinishedTrialError):
            self._link(trial_id, result)
            if trial_id not in internals.completed_trials(self):
                super().on_trial_result(trial_id, result)
                self._reported()[trial_id] = result.get("training_iteration")

    def _reported(self) -> dict[str, int]:
        """The last step reported to Optuna, per trial (absent from older pickles)."""
        return self.__dict__.setdefault("_last_steps", {})

    def _link(self, trial_id: str, result: dict) -> None:
        """Name the trial's Tune id and MLflow run on its Optuna trial, once."""
        linked = self.__dict__.setdefault("_linked", set())  # absent from older pickles
        if trial_id in linked or trial_id not in internals.optuna_trials(self):
            return
        if not linked:  # optuna-dashboard then names the objective, not "Objective 0"
            from optuna.exceptions import ExperimentalWarning

            with warnings.catch_warnings():  # stable since Optuna 3.2, still flagged
                warnings.simplefilter("ignore", ExperimentalWarning)
                internals.optuna_study(self).set_metric_names([self.metric])
        ot_trial = internals.optuna_trials(self)[trial_id]
        ot_trial.set_user_attr("tune_trial_id", trial_id)
        if result.get("mlflow_run_id"):
            ot_trial.set_user_attr("mlflow_run_id", result["mlflow_run_id"])
        linked.add(trial_id)


# Seconds between two tries of a search database that does not answer.
DATABASE_RETRY_S = 2.0


def while_the_database_is_down(call, *args):
    """`call(*args)`, tried again every DATABASE_RETRY_S while Optuna's database does not answer
    (a PostgreSQL restart, a network cut), as the tracking server's outage is waited out: Tune's
    loop waits, the trials run on and their results queue, and nothing is lost once it answers.
    Each of Optuna's writes is a transaction (rolled back when it fails), so a try again repeats
    none. A stop signal while it waits drops the call and lets Tune save and stop (a trial that
    ended meanwhile is then marked FAIL in Optuna at the study's end: Tune holds its result)."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import OperationalError

    said = False
    while True:
        try:
            return call(*args)
        except (StorageInternalError, OperationalError) as exc:
            if stopping.stop_requested():
                return None
            if not said:
                cause = exc.__cause__ or exc
                reason = str(getattr(cause, "orig", cause)).strip().splitlines()[:1]
                print(
                    f"waiting for the search database ({''.join(reason)[:200]}); the sweep "
                    "goes on once it answers (Ctrl-C: stop, and resume later)",
                    flush=True,
                )
                said = True
            time.sleep(DATABASE_RETRY_S)


def _stopped(result: dict) -> bool:
    """Whether a trial's last result is from before its last epoch: ASHA stopped it."""
    # Tune hands searchers the result flattened: the trial's config arrives as config/<key>.
    config = {k.removeprefix("config/"): v for k, v in result.items() if k.startswith("config/")}
    return trial_state("TERMINATED", result, config) == TrialState.STOPPED


def scheduler(space: Space):
    """ASHA over epochs (`training_iteration`) as the space sets it, each model type in rungs
    of its own (`PerModelASHA`) unless the space says `by_model: false`, or FIFO: no early
    stopping."""
    from ray.tune.schedulers import FIFOScheduler

    if space.scheduler["type"] == "none":
        return FIFOScheduler()
    asha = PerModelASHA if space.scheduler.get("by_model", True) else ResumableASHA
    return asha(
        time_attr="training_iteration",
        max_t=space.max_epochs,
        grace_period=space.scheduler["grace_period"],
        reduction_factor=space.scheduler["reduction_factor"],
    )


class ResumableASHA(AsyncHyperBandScheduler):
    """ASHA whose rungs survive `resume`.

    Tune (2.60) saves the searcher's state but not the scheduler's: a resumed sweep's ASHA
    started with empty rungs, and let run on what an uninterrupted sweep would have stopped.
    Tune hands the scheduler every trial it restores (`on_trial_add`, finished ones too); one
    that has results is replayed into its rungs from its own result file in the study folder,
    so the rungs hold what they held before the stop. Its decisions then are ignored: they
    were taken, and acted on, before.
    """

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        for result in recorded_results(trial):
            super().on_trial_result(tune_controller, trial, result)


def recorded_results(trial: Any) -> list[dict]:
    """The results a restored trial reported before the stop (its `result.json` in the study
    folder, read through the study's filesystem, as Tune reads it); none for a new trial."""
    if not (getattr(trial, "last_result", None) or {}).get("training_iteration"):
        return []  # a new trial (Tune gives it a last result of bookkeeping only)
    filesystem, path = internals.trial_results_file(trial)
    try:
        with filesystem.open_input_stream(path) as f:
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:  # none written yet
        return []
    results = []
    for line in lines:
        with contextlib.suppress(ValueError):  # a line cut short: the rungs as far as they go
            results.append(json.loads(line))
    return results


class PerModelASHA(ResumableASHA):
    """ASHA whose rungs compare a trial only with trials of its own model type.

    ASHA stops a trial whose value at a rung is behind the others' there, which presumes that
    early values predict final ones. Across model types they do not: the CAE sits near the mean
    digit for its first epochs and then overtakes MLPs that started fast, so one shared rung
    stopped every CAE of the quickstart at epoch 3 (measured here). Within a type the
    presumption is ASHA's usual one.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fresh = copy.deepcopy(internals.asha_brackets(self))  # empty, for each new type
        self._by_model: dict[str, list] = {}

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        model = str(flat_config(trial.config).get("model", "ae"))
        if model not in self._by_model:
            self._by_model[model] = copy.deepcopy(self._fresh)
        internals.use_asha_brackets(self, self._by_model[model])  # the trial gets one of these
        super().on_trial_add(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(
            f"{model}: " + " ".join(b.debug_str() for b in brackets)
            for model, brackets in self._by_model.items()
        )
