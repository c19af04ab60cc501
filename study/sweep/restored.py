"""A resume that really resumed, or a clear stop.

When Tune (2.60) cannot restore a study's saved state — a file refused by the trust boundary, a
damaged or emptied file, a Ray version that reads it differently — `TuneController.__init__`
logs "Failed to restore the run state … Restarting experiment" and begins the study again from
nothing: the sweep then "finished" with the samples it never ran and exit 0, the interrupted
trials called orphans. `RestoreCheck` stops the sweep in one line, before any trial starts or any
state is saved: at `setup`, when Tune logged a failed restore (`tune_restore_errors` catches it,
and its reason for that line); at the first step, when the trials Tune holds are not the ones
the saved state names.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from ray.tune import Callback

from models import StudyError
from study.sweep import plain_files, trust, tune_logs

# What Tune logged while restoring in this process (`tune_restore_errors`), newest last.
LOGGED: list[str] = []
CONTROLLER_LOGGER = "ray.tune.execution.tune_controller"


class RestoreFailed(StudyError):
    """Tune could not restore a study's saved state; the message names why and the way on."""


def saved_trial_ids(folder: Path) -> set[str]:
    """The ids of the trials in the study's newest saved Tune state, read as JSON: the state's
    pickled parts are never loaded here."""
    newest = trust.newest_state(folder)
    if newest is None:
        return set()
    try:
        state = json.loads(plain_files.read_bytes(newest))
        return {json.loads(json_state)["trial_id"] for json_state, _ in state["trial_data"]}
    except (ValueError, KeyError, TypeError, plain_files.TrustError):
        return set()  # a damaged state is refused before Tune starts (trust.check_state_whole)


def _collect(record: logging.LogRecord) -> None:
    error = record.exc_info[1] if record.exc_info else None
    if error is not None:
        LOGGED.append(f"{type(error).__name__}: {error}")


@contextlib.contextmanager
def tune_restore_errors() -> Iterator[None]:
    """Collect into `LOGGED` the errors Tune's controller logs meanwhile (nothing of it reaches
    the terminal the tool keeps quiet)."""
    LOGGED.clear()
    try:
        with tune_logs.listening(CONTROLLER_LOGGER, logging.ERROR, _collect):
            yield
    finally:
        LOGGED.clear()  # nothing of this resume reaches a later sweep in this process


class RestoreCheck(Callback):
    """Stops a resumed sweep whose saved state Tune did not restore (see the module): at
    `setup`, when Tune logged a failed restore (it restarts the experiment then, and may find
    it finished at once, saving an empty state over the saved one); at the first step, when
    the trials Tune holds are not the saved ones, whatever it logged."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self.expected: set[str] = set()

    def setup(self, **info) -> None:
        # Tune saves no state before the first step: the newest one is still the one it read
        self.expected = saved_trial_ids(self.folder)
        if LOGGED:
            self._stop(len(self.expected), len(self.expected))

    def on_step_begin(self, iteration, trials, **info) -> None:
        if not self.expected:
            return
        expected, self.expected = self.expected, set()  # the first step alone
        lost = expected - {t.trial_id for t in trials}
        if lost:
            self._stop(len(lost), len(expected))

    def _stop(self, lost: int, saved: int) -> None:
        reason = LOGGED[-1] if LOGGED else "Tune gave no reason"
        raise RestoreFailed(
            f"study {self.name!r}: Tune could not restore its saved state in {self.folder} "
            f"({reason}) and would have started the study again from nothing, losing {lost} of "
            f"its {saved} saved trials; nothing was run or written. Restore the file it names "
            "(or the folder) from a backup, then resume again"
        )
