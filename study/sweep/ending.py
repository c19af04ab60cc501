"""How a sweep ends: Tune's `fit`, a stop signal turned into a saved, resumable state, the
study's runs closed accordingly, and checkpoints pruned only where that is safe."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ray import tune

from models import StudyError
from study import tracking
from study.sweep import pictures, pruning, saving, stopping, trust
from study.sweep.leaders import leaders
from study.sweep.progress import closing_busy, trial_row
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


def fit(
    record: tracking.StudyRecord, tuner: tune.Tuner, folder: Path, objective: str, path: str
) -> Outcome:
    """Run the tuner, then close the study: FINISHED when every trial ended, KILLED (and the
    unfinished trials' runs marked interrupted) when a signal stopped it. `path`: the study's
    path as Tune sees it (its folder, or its place in a bucket)."""
    from ray.tune.experiment import Trial

    saving.adaptive_period()
    start_ms = int(time.time() * 1000)
    try:
        with stopping.stop_signals():
            results = tuner.fit()
        trials = saved_trials(folder, record.study, path)  # the state Tune saved: what resume reads
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
    catch_up(record, trials, objective)
    status = "KILLED" if unfinished else "FINISHED"
    tracking.set_study_status(record, status)
    pruning.prune_ended(trials)
    return Outcome(results, unfinished)


def catch_up(record: tracking.StudyRecord, trials: list, objective: str) -> None:
    """Draw the pictures a killed driver did not draw: of the trials that led their model type
    when they ended (`study.sweep.leaders`). Never beside the closing thread still drawing (its
    drain timed out): those trials are drawn by the study's next `fit`."""
    if closing_busy():
        print(
            "warning: pictures still being drawn; those not finished are drawn by the "
            "study's next `resume`",
            flush=True,
        )
        return
    rows = [trial_row(t, objective) for t in trials if t.status == "TERMINATED"]
    led = leaders(rows, objective)
    pictures.catch_up(record, [t for t in trials if t.trial_id in led])


def saved_trials(folder: Path, name: str, path: str) -> list:
    """The trials of the study's newest saved Tune state, unpickled only from a verified private
    copy (`trust.verified_state`); their paths point at the study (`path`), as Tune's own."""
    import copy

    from ray.tune import ExperimentAnalysis

    with trust.verified_state(folder, name) as state:
        trials = ExperimentAnalysis(str(state)).trials
    root, _, leaf = path.rpartition("/")
    for trial in trials:  # the copy's folder stood in for the study: point back at it
        storage = copy.copy(trial.storage)
        storage.storage_fs_path = root
        storage.experiment_dir_name = leaf
        trial.set_storage(storage)
    return trials
