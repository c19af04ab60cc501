"""The tool's touches of Ray Tune's private internals, in one place, each with a test
(tests/test_internals.py) that fails naming it when an upgrade changes what it relies on.
Written against the versions `pyproject.toml` pins.
"""

from __future__ import annotations

# Tune's adaptive period between saves of its state: "auto" makes it max(10 s, 19 × the last
# save's time), so that saving takes at most ~5% of the driver's loop.
SAVE_SHARE = 0.05


def set_save_period_floor(floor_s: float) -> None:
    """Tune's adaptive save period, with `floor_s` for its 10 s floor: saves stay ~5% of the
    driver's loop however large the state grows, and a driver killed while the state is small
    leaves at most `floor_s` of trials unknown to `resume`.

    Touches `ray.tune.execution.experiment_state._ExperimentCheckpointManager.
    _update_auto_checkpoint_time(self, time_taken)`, which sets `self._checkpoint_period` when
    the period is "auto" (`TUNE_GLOBAL_CHECKPOINT_S`'s default)."""
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager as manager

    def update(self, time_taken: float) -> None:
        if self._auto_checkpoint_enabled:
            self._checkpoint_period = max(floor_s, time_taken * (1 - SAVE_SHARE) / SAVE_SHARE)

    manager._update_auto_checkpoint_time = update
