"""Which trial checkpoints a study may delete, and when: the disk a sweep uses stays bounded
without ever deleting a checkpoint that `resume` or a retry could need.

Tune keeps every checkpoint (`num_to_keep=None`): when Tune prunes, a driver killed between
deleting a checkpoint and saving its experiment state leaves that state pointing at a deleted
checkpoint, and the resumed trial cannot restore. The rule here reads the state Tune
has *saved* — what `resume` would read — and deletes only checkpoints older than the one it names
for each trial: later saves name that one or a newer one, and a retry restores from the newest
the running driver knows, which is newer still.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

from ray.tune import Callback

# The driver prunes as often as Tune saves its state (every 2 s: study.sweep.ending), but spends at
# most ~5% of its loop on it: a study of 2 trials reads its state in ~1 ms, and the time grows
# with the number of trials.
PRUNE_EVERY_S, PRUNE_SHARE = 2.0, 0.05
STATE_FILES = "experiment_state-*.json"


def checkpoints(trial_dir: Path) -> list[Path]:
    """A trial's checkpoint folders, oldest first (Tune numbers them checkpoint_000000, ...)."""
    return sorted(trial_dir.glob("checkpoint_*"))


def saved_checkpoints(folder: Path) -> list[Path]:
    """The checkpoint of each trial's last result in the study's newest saved state (the file
    `resume` reads). Read as plain JSON, never unpickled (see study.sweep.trust). Empty when there is
    no readable state yet."""
    states = sorted(folder.glob(STATE_FILES))  # Tune resumes from the greatest name
    try:
        trial_data = json.loads(states[-1].read_text())["trial_data"]
        results = [json.loads(metadata).get("last_result") or {} for _, metadata in trial_data]
    except (IndexError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return []  # none yet, or one being written: prune next time
    named = []
    for result in results:
        trial_id, name = result.get("trial_id"), result.get("checkpoint_dir_name")
        if not (_matches(r"[\w-]+", trial_id) and _matches(r"checkpoint_\d+", name)):
            continue  # e.g. a trial that failed for good: its last report has no checkpoint
        named += [path for path in folder.glob(f"*_{trial_id}/{name}") if path.is_dir()]
    return named


def _matches(pattern: str, value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(pattern, value) is not None


def prune_behind_saved_state(folder: Path) -> int:
    """Delete each trial's checkpoints older than the one before its last saved result's
    checkpoint; returns how many were deleted. Safe while the sweep runs and after a killed
    driver. The one before is kept as well: should Tune save a result before registering its
    checkpoint, that state would restore from the one before."""
    removed = 0
    for kept in saved_checkpoints(folder):
        older = [c for c in checkpoints(kept.parent) if c.name < kept.name]
        for stale in older[:-1]:
            shutil.rmtree(stale, ignore_errors=True)
            removed += 1
    return removed


def prune_ended(trials: list) -> None:
    """Once `fit` has returned, given the trials of the saved state: a trial that ended
    (TERMINATED) keeps only the checkpoint the state names; the others keep that one and any
    newer, since `resume` restarts them from it."""
    for trial in trials:
        path = getattr(trial.checkpoint, "path", None)
        if path is None:
            continue
        kept = Path(path)
        for folder in checkpoints(kept.parent):
            if folder.name < kept.name or (trial.status == "TERMINATED" and folder != kept):
                shutil.rmtree(folder, ignore_errors=True)


class CheckpointPruner(Callback):
    """Prunes behind the saved state while the sweep runs, on Tune's loop (no thread to outlive
    a Ctrl-C): every PRUNE_EVERY_S, or less often where pruning takes longer."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._next = 0.0

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        start = time.monotonic()
        if start < self._next:
            return
        prune_behind_saved_state(self.folder)
        took = time.monotonic() - start
        self._next = start + max(PRUNE_EVERY_S, took / PRUNE_SHARE)
