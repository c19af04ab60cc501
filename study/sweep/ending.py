"""How a sweep ends: Tune's `fit`, a stop signal turned into a saved, resumable state, the
study's runs closed accordingly, and checkpoints pruned only where that is safe."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ray import tune

from models import StudyError
from study import tracking
from study.sweep import pictures, pruning, stopping, trust
from study.sweep.progress import trial_state
from study.trial.states import TrialState


@dataclass
class Outcome:
    """How a sweep's `fit` ended: Tune's results and the trials it left unfinished (a Ctrl-C,
    SIGTERM or SIGUSR1 stops the sweep with the state saved; `resume` continues them)."""

    results: tune.ResultGrid
    unfinished: list[str]

    @property
    def interrupted(self) -> bool:
        return bool(self.unfinished)


def fit(record: tracking.StudyRecord, tuner: tune.Tuner, folder: Path) -> Outcome:
    """Run the tuner, then close the study: FINISHED when every trial ended, KILLED (and the
    unfinished trials' runs marked interrupted) when a signal stopped it."""
    from ray.tune.experiment import Trial

    # Tune saves its state every ~10 s or more by default; a trial that starts and ends in the
    # gap of a killed driver is unknown to `resume` (its run is then marked orphaned). Saving
    # costs milliseconds here, so the gap is kept to 2 s.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    start_ms = int(time.time() * 1000)
    try:
        with stopping.stop_signals():
            results = tuner.fit()
        trials = saved_trials(folder, record.study)  # the state Tune saved: what resume reads
    except StudyError:  # a refused state, a failed restore: the study stays resumable
        tracking.set_study_status(record, "KILLED")
        raise
    ended = (Trial.TERMINATED, Trial.ERROR)
    # Tune (2.60) can save a trial that failed for good as RUNNING: when it untracks the dead
    # worker's actor before handling the trial's failure, its stop returns before marking the
    # trial for the next state save, so a killed worker's trial reads RUNNING and would be
    # called interrupted. The driver's callback saw it fail and closed its run in this `fit`:
    # that close stands. `resume` restarts such a trial either way (errored ones too).
    closed = tracking.trials_closed_since(record.uri, record.experiment_id, start_ms)
    unfinished = sorted(
        t.trial_id for t in trials if t.status not in ended and t.trial_id not in closed
    )
    for trial_id in unfinished:
        tracking.finish_trial(record.uri, record.experiment_id, trial_id, TrialState.INTERRUPTED)
    tracking.mark_orphans(record.uri, record.experiment_id, {t.trial_id for t in trials})
    # pictures of trials that a killed driver saw end but did not draw
    drawn = [
        t
        for t in trials
        if trial_state(t.status, t.last_result or {}, t.config) in pictures.DRAWN_STATES
    ]
    pictures.catch_up(record, drawn)
    status = "KILLED" if unfinished else "FINISHED"
    tracking.set_study_status(record, status)
    pruning.prune_ended(trials)
    return Outcome(results, unfinished)


def saved_trials(folder: Path, name: str) -> list:
    """The trials of the study's newest saved Tune state, unpickled only from a verified private
    copy (`trust.verified_state`); their paths point into the study folder, as Tune's own."""
    import copy

    from ray.tune import ExperimentAnalysis

    with trust.verified_state(folder, name) as state:
        trials = ExperimentAnalysis(str(state)).trials
    for trial in trials:  # the copy's folder stood in for the study folder: point back at it
        storage = copy.copy(trial.storage)
        storage.storage_fs_path = folder.parent.as_posix()
        storage.experiment_dir_name = folder.name
        trial.set_storage(storage)
    return trials
