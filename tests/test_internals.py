"""Each touch of Ray Tune's private internals (study/sweep/internals.py) still does what the tool
relies on: an upgrade that changes one fails here, naming it."""

from __future__ import annotations

from study.sweep import internals


def test_the_save_period_floor_replaces_tune_s_10_s_and_keeps_its_5_percent_share():
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    original = _ExperimentCheckpointManager._update_auto_checkpoint_time
    try:
        internals.set_save_period_floor(2.0)
        manager = _ExperimentCheckpointManager(storage=None, checkpoint_period="auto")
        assert manager.auto_checkpoint_enabled
        manager._update_auto_checkpoint_time(0.01)  # a cheap save: the floor
        assert manager._checkpoint_period == 2.0
        manager._update_auto_checkpoint_time(1.0)  # a 1 s save: 19 s between saves
        assert abs(manager._checkpoint_period - 19.0) < 1e-9
        fixed = _ExperimentCheckpointManager(storage=None, checkpoint_period=5)
        fixed._update_auto_checkpoint_time(1.0)  # a period the user fixed stays
        assert fixed._checkpoint_period == 5.0
    finally:
        _ExperimentCheckpointManager._update_auto_checkpoint_time = original
