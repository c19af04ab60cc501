"""A full disk stops a sweep; it does not corrupt it.

Tune copies its state and every checkpoint into the study folder, file by file: on a full disk
a copy stops midway, the state file is left cut short, and each trial's retry fails the same
way. So the driver watches the study folder's free space and stops the sweep the way Ctrl-C
does while there is still room to save its state whole; a trial that hits ENOSPC all the same
stops the sweep instead of being retried. `resume`, once space is freed, finishes every sample.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import time
from pathlib import Path

from ray.tune import Callback

from models import ResourceError
from study.hints import resume_command

# Free space below which the sweep stops: room for a last save of Tune's state and a trial's
# checkpoint in flight (the largest model's, the VAE's with Adam's state, is ~10 MB).
RESERVE_BYTES = 32 * 2**20
CHECK_EVERY_S = 2.0
ENOSPC_TEXT = f"[Errno {errno.ENOSPC}]"


def free_bytes(folder: Path) -> int:
    """Bytes free for this user on the file system that holds `folder`."""
    return shutil.disk_usage(folder).free


def nearest_existing(path: Path) -> Path:
    """`path`, or the closest folder above it that exists: where it would be made."""
    existing = path.expanduser().absolute()
    while not existing.exists():
        existing = existing.parent
    return existing


def check_room(folder: Path) -> None:
    """Refuse to start on a disk with less free space than the reserve (exit 2, one line)."""
    existing = nearest_existing(folder)
    free = free_bytes(existing)
    if free < RESERVE_BYTES:
        raise ResourceError(
            f"{existing} has {free / 2**20:.0f} MB free, less than the {RESERVE_BYTES // 2**20} MB "
            "a sweep keeps in reserve for its state and checkpoints: free space there or pass "
            "another --storage"
        )


def stop_line(folder: Path, name: str) -> str:
    return (
        f"no space left on {folder} ({free_bytes(folder) / 2**20:.0f} MB free): the sweep stops "
        f"with its state saved; free space there, then `{resume_command(name, folder.parent)}`"
    )


class DiskGuard(Callback):
    """Stops the sweep, as Ctrl-C does, when the study folder's disk runs low or a trial fails
    for want of space; says so in one line."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name
        self._next = 0.0
        self.stopped = False

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        now = time.monotonic()
        if self.stopped or now < self._next:
            return
        self._next = now + CHECK_EVERY_S
        if free_bytes(self.folder) < RESERVE_BYTES:
            self._stop()

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        if _out_of_space(trial):
            self._stop()

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        if _out_of_space(trial):
            self._stop()

    def _stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            print(stop_line(self.folder, self.name), flush=True)
            os.kill(os.getpid(), signal.SIGINT)  # Tune's own graceful stop: state saved


def _out_of_space(trial) -> bool:
    """Whether the trial's last error was a full disk (its error file says ENOSPC)."""
    path = getattr(trial, "error_file", None)
    try:
        return bool(path) and ENOSPC_TEXT in Path(path).read_text()[-4000:]
    except OSError:
        return False
