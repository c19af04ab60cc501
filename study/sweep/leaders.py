"""The ended trials' standings while a sweep runs, kept up as each trial ends: which trial is
best (the progress line) and which trials lead their model type (they get pictures and test
numbers, `study.sweep.pictures`). Each end costs O(log PICTURED_PER_MODEL), whatever the number
of trials already ended: rebuilding and ranking a table of every trial at each end cost 0.34 s
at 10,000 trials.

A trial that is not among the best PICTURED_PER_MODEL of its model type when it ends never will
be (later trials only add competition), so every trial any view ever crowns was a leader when it
ended: it has pictures and test numbers. The others (at scale, nearly all: about
PICTURED_PER_MODEL × ln(n) of n trials of a type lead when they end) are not drawn, which kept
the driver's drawing thread from falling behind (56% undrawn at the end of a 1,000-trial sweep,
then minutes of catching up).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from typing import Any

from study.trial.ranking import rank_key
from study.trial.states import FINISHED

PICTURED_PER_MODEL = 10


class Leaderboard:
    """The best ended trials of each model type, by the one ranking rule
    (`study.trial.ranking.rank_key`), fed one trial's row at a time (`trial_row`)."""

    def __init__(self, objective: str, keep: int = PICTURED_PER_MODEL) -> None:
        self.objective = objective
        self.keep = keep
        self.best: Mapping[str, Any] | None = None
        self._best_key: tuple | None = None
        self._tops: dict[str, list[tuple]] = {}  # model type -> its best keys, best first
        self._led: dict[str, bool] = {}  # finished trial id -> whether it led when it ended
        self.states: dict[str, str] = {}  # ended trial id -> its state (done, failed, ...)
        self.seeded = False  # whether the trials a resumed sweep restored as ended are counted

    def add(self, row: Mapping[str, Any]) -> bool:
        """Count an ended trial; returns whether it is among the best `keep` of its model type
        now. Adding a finished trial again returns the first answer (both callbacks add it)."""
        trial_id = str(row["trial_id"])
        self.states[trial_id] = str(row["state"])
        if trial_id in self._led:
            return self._led[trial_id]
        value = row.get(self.objective)
        if row["state"] not in FINISHED or value is None or math.isnan(value):
            return False  # failed, or without a number: not ranked, and may run again
        key = rank_key(row, self.objective)
        top = self._tops.setdefault(str(row["model"]), [])
        leads = len(top) < self.keep or key < top[-1]
        if leads:
            bisect.insort(top, key)
            del top[self.keep :]
        if self._best_key is None or key < self._best_key:
            self.best, self._best_key = row, key
        self._led[trial_id] = leads
        return leads

    def restarted(self, trial_id: str) -> None:
        """A trial that ended (failed) runs again (a resumed study restarts failed trials)."""
        self.states.pop(trial_id, None)


def in_end_order(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """`rows` (each with an `ended_at` time: its last report's) in the order the trials ended."""
    return sorted(rows, key=lambda row: (row.get("ended_at") or 0.0, str(row["trial_id"])))


def leaders(rows: Iterable[Mapping[str, Any]], objective: str) -> set[str]:
    """The trials that led their model type when they ended, replaying `rows` in the order they
    ended: what the sweep's drawing thread saw."""
    board = Leaderboard(objective)
    return {str(row["trial_id"]) for row in in_end_order(rows) if board.add(row)}
