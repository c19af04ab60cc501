"""A trial's states, spelled once: what Tune's status, MLflow's state tag and every view say.

A finished trial that is no better than the mean digit (`study.trial.metrics.degenerate`) keeps its
state in the ranking, but is *shown* as degenerate, and one no better than PCA as "PCA better":
`status`, the sweep's lines and the MLflow state tag all use `shown`'s words, and `read` turns a
tag back into the state.
"""

from __future__ import annotations

from enum import StrEnum


class TrialState(StrEnum):
    DONE = "done"  # ran its full budget of epochs
    STOPPED = "stopped early"  # ended by the scheduler (ASHA) before its last epoch
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # the sweep stopped mid-trial; `resume` continues it
    RUNNING = "running"
    ORPHANED = "orphaned"  # a run Tune never saved: not part of the study
    PAUSED = "paused"
    PENDING = "pending"


FINISHED = (TrialState.DONE, TrialState.STOPPED)  # ranked, pictured
ENDED = (*FINISHED, TrialState.FAILED)  # closed for good: `resume` does not reopen them
# What a study's trials can be in, as `status` and the sweep's summary count them.
COUNTED = (
    *FINISHED,
    TrialState.FAILED,
    TrialState.INTERRUPTED,
    TrialState.RUNNING,
    TrialState.ORPHANED,
)
_DEGENERATE = {TrialState.DONE: "degenerate", TrialState.STOPPED: "stopped, degenerate"}
_BELOW_PCA = {TrialState.DONE: "done, PCA better", TrialState.STOPPED: "stopped, PCA better"}
_READ = {words: state for marks in (_DEGENERATE, _BELOW_PCA) for state, words in marks.items()}


def shown(state: str, degenerate: bool, below_pca: bool = False) -> str:
    """The words for a trial's state: a degenerate finished trial says so, and so does one no
    better than PCA with as many components as its code (`study.trial.ranking.below_pca`)."""
    if degenerate:
        return _DEGENERATE.get(state, state)
    return _BELOW_PCA.get(state, state) if below_pca else str(state)


def read(words: str) -> str:
    """The state that `shown`'s words stand for (a tag written by an older version reads as is)."""
    return str(_READ.get(words, words))
