"""A trial's states, spelled once: what Tune's status, MLflow's state tag and every view say.

A finished trial that is no better than the mean digit (`study.trial.metrics.degenerate`) keeps its
state in the ranking, but is *shown* as degenerate: `status`, the sweep's lines and the MLflow
state tag all use `shown`'s words, and `read` turns a tag back into the state.
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
COUNTED = (*FINISHED, TrialState.FAILED, TrialState.INTERRUPTED, TrialState.RUNNING,
           TrialState.ORPHANED)  # fmt: skip
_DEGENERATE = {TrialState.DONE: "degenerate", TrialState.STOPPED: "stopped, degenerate"}
_READ = {words: state for state, words in _DEGENERATE.items()}


def shown(state: str, degenerate: bool) -> str:
    """The words for a trial's state: a degenerate finished trial says so."""
    return _DEGENERATE.get(state, state) if degenerate else str(state)


def read(words: str) -> str:
    """The state that `shown`'s words stand for (a tag written by an older version reads as is)."""
    return str(_READ.get(words, words))
