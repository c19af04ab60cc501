"""ASHA's rungs per model type (study.sweep.search.PerModelASHA), driven as Tune drives a scheduler."""

from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from study.sweep.search import PerModelASHA, scheduler, stop_epochs
from study.sweep.space_file import parse_space


def trial(trial_id: str, model: str) -> SimpleNamespace:
    """What a scheduler reads of a Tune trial: its id and config."""
    return SimpleNamespace(trial_id=trial_id, config={"model": model, "epochs": 4})


def decisions(scheduler, results: list[tuple[SimpleNamespace, int, float]]) -> list[str]:
    """Feed (trial, epoch, val_mse) in order, as Tune would; the scheduler's decision for each."""
    scheduler.set_search_properties("val_mse", "min")
    for t in {id(t): t for t, _, _ in results}.values():
        scheduler.on_trial_add(None, t)
    return [
        scheduler.on_trial_result(None, t, {"training_iteration": epoch, "val_mse": value})
        for t, epoch, value in results
    ]


def test_a_slow_starting_type_is_judged_against_its_own_kind_only():
    """Two fast MLPs reach the first rung ahead of two slow-starting CAEs: shared rungs stop
    both CAEs (behind the MLPs' values), per-type rungs stop only the worse CAE."""
    ae1, ae2, cae1, cae2 = (
        trial("a1", "ae"),
        trial("a2", "ae"),
        trial("c1", "cae"),
        trial("c2", "cae"),
    )
    results = [(ae1, 1, 0.040), (ae2, 1, 0.045), (cae1, 1, 0.066), (cae2, 1, 0.068)]
    kwargs = {
        "time_attr": "training_iteration",
        "max_t": 4,
        "grace_period": 1,
        "reduction_factor": 2,
    }
    shared = decisions(AsyncHyperBandScheduler(**kwargs), results)
    per_type = decisions(PerModelASHA(**kwargs), results)
    stop, go = TrialScheduler.STOP, TrialScheduler.CONTINUE
    assert shared == [go, stop, stop, stop]
    assert per_type == [go, stop, go, stop]


def test_the_epochs_a_trial_checkpoints_for_are_where_ray_s_asha_decides():
    """Issue 40, defect 2: the tool truncated the rungs' milestones (1, 1, 2, 3, 5, 7, 11, 17
    for a factor of 1.5 over 20 epochs) where Ray decides at the first epoch at or after each
    (1, 2, 3, 4, 6, 8, 12, 18): a trial stopped at a real rung had no checkpoint from it."""
    space = parse_space(
        {
            "epochs": 20,
            "params": {"model": ["ae"]},
            "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 1.5},
        },
        "inline",
    )
    asha = scheduler(space)
    asha.set_search_properties("val_mse", "min")
    leader = trial("lead", "ae")
    asha.on_trial_add(None, leader)
    decided = []  # the epochs at which Ray's ASHA recorded the trial at a rung
    for epoch in range(1, 21):
        before = sum(len(recorded) for _, recorded in asha._brackets[0]._rungs)
        asha.on_trial_result(None, leader, {"training_iteration": epoch, "val_mse": 0.1})
        if sum(len(recorded) for _, recorded in asha._brackets[0]._rungs) > before:
            decided.append(epoch)
    assert stop_epochs(space) == (1, 2, 3, 4, 6, 8, 12, 18)
    assert list(stop_epochs(space)) == [epoch for epoch in decided if epoch < 20]


def test_a_resumed_sweep_stops_what_an_uninterrupted_one_would(tmp_path):
    """Issue 40, defect 1: Tune saves no scheduler state, so after `resume` every rung was
    empty and trials that would have been stopped ran on. A restored trial (one with results)
    is replayed into its rungs from its result file, as Tune hands it to the scheduler."""
    import json

    import pyarrow.fs

    kwargs = {
        "time_attr": "training_iteration",
        "max_t": 4,
        "grace_period": 1,
        "reduction_factor": 2,
    }
    before = [(trial(f"a{i}", "ae"), 1, value) for i, value in enumerate((0.05, 0.04, 0.03))]
    after = [(trial("a3", "ae"), 1, 0.06), (trial("a4", "ae"), 1, 0.035)]
    uninterrupted = decisions(PerModelASHA(**kwargs), before + after)[len(before) :]
    assert uninterrupted == [TrialScheduler.STOP, TrialScheduler.CONTINUE]

    restored = []  # what Tune restores: each trial with its last result and its result file
    for t, epoch, value in before:
        folder = tmp_path / t.trial_id
        folder.mkdir()
        result = {"training_iteration": epoch, "val_mse": value}
        (folder / "result.json").write_text(json.dumps(result) + "\n")
        t.last_result = result
        t.storage = SimpleNamespace(
            trial_fs_path=str(folder), storage_filesystem=pyarrow.fs.LocalFileSystem()
        )
        restored.append(t)
    resumed = PerModelASHA(**kwargs)
    resumed.set_search_properties("val_mse", "min")
    for t in restored:
        resumed.on_trial_add(None, t)
    assert decisions(resumed, after) == uninterrupted
    forgetful = decisions(PerModelASHA(**kwargs), after)  # rungs empty, as before the fix
    assert forgetful != uninterrupted
