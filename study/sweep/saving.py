"""How the driver saves a study's state as the study grows, at a cost that follows what changed.

Tune writes its state into a staging folder on the driver and copies that whole folder into the
study folder at every save (`ray.train._internal.storage._upload_to_fs_path`): its state file,
and every trial's logs (result.json, progress.csv, params, events, error.txt). Saved every 2 s,
a 1,000-trial sweep rewrote 3.94 GB of state and ~5 files per trial ever run at each save.
Two changes keep it in step with what changed:

- the period: Tune's adaptive one (saving at most ~5% of the loop), with a 2 s floor instead of
  Tune's 10 s (`internals.set_save_period_floor`): while the state is small, a killed driver
  leaves at most ~2 s of trials unknown to `resume` (their runs are marked orphaned), as before;
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

from study.sweep import internals

SAVE_FLOOR_S = 2.0


@dataclass
class Saving:
    """What this driver knows of one study folder's saves (the trial workers know nothing)."""

    staging: Path | None = None  # Tune's staging folder of this driver's session
    ended: set[str] = field(default_factory=set)  # folders of trials that ended in this session
    # when the copy of the newest state now in the study folder began (time.monotonic)
    state_in_place_since: float = -math.inf


_SAVINGS: dict[Path, Saving] = {}


def of(folder: Path) -> Saving:
    """The study folder's record in this process."""
    return _SAVINGS.setdefault(Path(folder), Saving())


def adaptive_period() -> None:
    """Save as often as every SAVE_FLOOR_S, and less often as saves take longer."""
    internals.set_save_period_floor(SAVE_FLOOR_S)


class SaveWatch(Callback):
    """Tells the study's filesystem in this process where Tune stages its state and which
    trials have ended (their logs will not change again in this session)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def setup(self, **info) -> None:
        _SAVINGS[Path(self.folder)] = Saving()  # a new session: a new staging folder

    def on_step_begin(self, iteration, trials, **info) -> None:
        saving = of(self.folder)
        if saving.staging is None and trials:
            saving.staging = Path(trials[0].storage.experiment_driver_staging_path)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        of(self.folder).ended.add(trial.storage.trial_dir_name)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        of(self.folder).ended.add(trial.storage.trial_dir_name)
