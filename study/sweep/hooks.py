"""Testing hooks: every trial fails once, or waits once, right after reporting a given epoch,
so that tests of retries and of stopped sweeps act at a moment they can see, however fast the
epochs.

They are set in the driver's environment (`sweep`, `resume`). The driver reads them
(`from_environment`) and hands them to each trial with its other parameters: they reach trial
workers the driver's Ray did not start (a cluster's, or a Ray already running in the process).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

# With FAIL_AT=N and FAIL_MARKERS=DIR, every trial raises once, right after reporting epoch N;
# the marker file DIR/<trial id> makes it once only.
FAIL_AT, FAIL_MARKERS = "AESTUDY_FAIL_ONCE_AT_EPOCH", "AESTUDY_FAIL_MARKERS"
# With HOLD_AT=N and HOLD_MARKERS=DIR, every trial, the first time it has reported epoch N,
# writes DIR/<trial id> and waits there (HOLD_LIMIT_SECONDS at most) until DIR/release exists;
# once it exists no trial waits.
HOLD_AT, HOLD_MARKERS = "AESTUDY_HOLD_ONCE_AT_EPOCH", "AESTUDY_HOLD_MARKERS"
HOLD_RELEASE, HOLD_LIMIT_SECONDS = "release", 600.0

Hooks = dict[str, str]  # the variables above that the driver's environment sets


class InjectedFailure(RuntimeError):
    """Raised by the failing hook."""


def from_environment() -> Hooks:
    """The hooks this process's environment sets ({} for any real sweep)."""
    names = (FAIL_AT, FAIL_MARKERS, HOLD_AT, HOLD_MARKERS)
    return {name: os.environ[name] for name in names if os.environ.get(name)}


def after_report(hooks: Hooks, trial_id: str, epoch: int) -> None:
    """Run the hooks due once trial `trial_id` has reported `epoch`."""
    if _first_time(hooks, FAIL_AT, FAIL_MARKERS, trial_id, epoch):
        raise InjectedFailure(f"injected failure in trial {trial_id} after epoch {epoch}")
    if _first_time(hooks, HOLD_AT, HOLD_MARKERS, trial_id, epoch):
        release = Path(hooks[HOLD_MARKERS]) / HOLD_RELEASE
        deadline = time.monotonic() + HOLD_LIMIT_SECONDS
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def _first_time(hooks: Hooks, at: str, markers: str, trial_id: str, epoch: int) -> bool:
    """Whether hook `at` is due now, for the first time for this trial (then its marker is
    written); a released hold is never due."""
    if hooks.get(at) != str(epoch) or not hooks.get(markers):
        return False
    folder = Path(hooks[markers])
    marker = folder / trial_id
    if marker.exists() or (markers == HOLD_MARKERS and (folder / HOLD_RELEASE).exists()):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(epoch))
    return True
