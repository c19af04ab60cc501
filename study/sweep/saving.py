"""How the driver saves a study's state as the study grows, at a cost that follows what changed.

Tune writes its state into a staging folder on the driver and copies that whole folder into the
study folder at every save (`ray.train._internal.storage._upload_to_fs_path`): its state file,
and every trial's logs (result.json, progress.csv, params, events, error.txt). Saved every 2 s,
a 1,000-trial sweep rewrote 3.94 GB of state and ~5 files per trial ever run at each save.
Two changes keep it in step with what changed:

- the period (`period`): as Tune's adaptive one, long enough that saving takes at most ~5% of
  the loop, and long enough that the state (~25 KB a trial) is written at most SAVE_BYTES_PER_S
  on average (a second time by Tune into its staging folder); but as short as 2 s (Tune's floor
  is 10 s) while the state is small: a killed driver leaves the trials started since the last
  save unknown to `resume` (their runs are marked orphaned). The period is 2 s up to ~120
  trials, ~17 s at 1,000, ~2.5 min at 10,000 (where Tune's own rule gives ~20 s but writes
  ~25 MB/s);
- an ended trial's logs are copied until the study folder holds them whole, then taken out of
  the staging folder as they are copied the last time (`verified_storage`): later saves no
  longer see them.

`SaveWatch` tells this process's study filesystem what it needs for that: where the staging
folder is and which trial folders belong to ended trials. The filesystem tells the checkpoint
pruner when a saved state is in place (`Saving.state_in_place_since`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ray.tune import Callback

from study.sweep import internals, trust

# Seconds between saves at least; share of the loop spent saving at most; bytes of Tune's state
# written into the study folder per second, on average, at most.
SAVE_FLOOR_S, SAVE_SHARE, SAVE_BYTES_PER_S = 2.0, 0.05, 1.5e6


@dataclass
class Saving:
    """What this driver knows of one study folder's saves (the trial workers know nothing)."""

    staging: Path | None = None  # Tune's staging folder of this driver's session
    ended: set[str] = field(default_factory=set)  # folders of trials that ended in this session
    # when the copy of the newest state now in the study folder began (time.monotonic)
    state_in_place_since: float = -math.inf
    state_bytes: int = 0  # the size of Tune's newest saved state


_SAVINGS: dict[Path, Saving] = {}


def of(folder: Path) -> Saving:
    """The study folder's record in this process."""
    return _SAVINGS.setdefault(Path(folder), Saving())


def period(save_seconds: float) -> float:
    """Seconds until Tune's next save, given what the last one took (see above)."""
    state_bytes = max((record.state_bytes for record in _SAVINGS.values()), default=0)
    return max(
        SAVE_FLOOR_S,
        save_seconds * (1 - SAVE_SHARE) / SAVE_SHARE,
        state_bytes / SAVE_BYTES_PER_S,
    )


def adaptive_period() -> None:
    """Tune's saves follow `period`."""
    internals.set_save_period(period)


class SaveWatch(Callback):
    """Tells the study's filesystem in this process where Tune stages its state and which
    trials have ended (their logs will not change again in this session)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def setup(self, **info) -> None:
        _SAVINGS.clear()  # one sweep per driver: a new session, a new staging folder
        _SAVINGS[Path(self.folder)] = Saving()

    def on_step_begin(self, iteration, trials, **info) -> None:
        saving = of(self.folder)
        if saving.staging is None and trials:
            saving.staging = internals.staging_folder(trials[0])

    def get_state(self) -> None:
        """Tune saves its callbacks' state after its own: note the size of what it wrote."""
        record = of(self.folder)
        if record.staging is not None:
            states = [p.stat().st_size for p in record.staging.glob(trust.STATE_FILES)]
            record.state_bytes = max(states, default=0)
        return None

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        of(self.folder).ended.add(internals.trial_folder_name(trial))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        of(self.folder).ended.add(internals.trial_folder_name(trial))
