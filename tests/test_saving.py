"""Saving a study's state at a cost that follows what changed (study.sweep.saving): the pruner
acts on what each save named once a copy begun after it is in place, and an ended trial's logs
stop being copied once the study folder holds them whole."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs

from study.sweep import saving, verified_storage
from study.sweep.pruning import CheckpointPruner, checkpoints


def trial_with_checkpoints(folder: Path, trial_id: str, count: int, named: int):
    trial_dir = folder / f"ae_{trial_id}"
    for i in range(count):
        (trial_dir / f"checkpoint_{i:06d}").mkdir(parents=True)
    path = trial_dir / f"checkpoint_{named:06d}"
    return SimpleNamespace(trial_id=trial_id, checkpoint=SimpleNamespace(path=str(path)))


def names(trial_dir: Path) -> list[str]:
    return [c.name[-1] for c in checkpoints(trial_dir)]


def test_the_pruner_deletes_behind_a_save_only_once_a_copy_begun_after_it_is_in_place(tmp_path):
    folder = tmp_path / "study"
    pruner = CheckpointPruner(folder)
    saving.of(folder).state_in_place_since = time.monotonic()  # an older copy is in place
    trial = trial_with_checkpoints(folder, "a", count=5, named=3)
    idle = trial_with_checkpoints(folder, "b", count=4, named=3)  # no checkpoint since a save
    pruner.on_checkpoint(0, [trial, idle], trial, None)
    pruner.get_state()  # Tune saves: the state names checkpoint 3 of trial a
    pruner.on_step_end(0, [trial, idle])
    assert names(folder / "ae_a") == ["0", "1", "2", "3", "4"]  # that state is not in place yet

    saving.of(folder).state_in_place_since = time.monotonic()  # a copy begun after the save
    pruner.on_step_end(1, [trial, idle])
    assert names(folder / "ae_a") == ["2", "3", "4"]  # the one before the named one stays
    assert names(folder / "ae_b") == ["0", "1", "2", "3"]  # nothing named anew: untouched
    pruner.get_state()  # a save with no new checkpoint notes nothing
    assert pruner._saves == []


def copy_staging(staging: Path, folder: Path) -> None:
    """What Tune's save does: copy the whole staging folder into the study folder."""
    fs = verified_storage.filesystem(folder, folder.name, verify=False)
    pyarrow.fs.copy_files(str(staging), str(folder), destination_filesystem=fs)


def test_an_ended_trial_s_logs_are_copied_until_whole_then_left_out_of_later_saves(tmp_path):
    folder, staging = tmp_path / "study", tmp_path / "staging"
    for trial in ("ae_done", "ae_running"):
        (staging / trial).mkdir(parents=True)
        (staging / trial / "result.json").write_text('{"epoch": 1}\n')
    (staging / "experiment_state-x.json").write_text("{}")
    folder.mkdir()
    record = saving.of(folder)
    record.staging, record.ended = staging, set()
    before = time.monotonic()
    copy_staging(staging, folder)
    assert record.state_in_place_since >= before  # the state's copy told the pruner

    # the trial ends with a last line not yet in the study folder: copied once more, whole
    (staging / "ae_done" / "result.json").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    record.ended.add("ae_done")
    copy_staging(staging, folder)
    assert (folder / "ae_done" / "result.json").read_text().count("epoch") == 2
    assert (staging / "ae_done" / "result.json").exists()

    copy_staging(staging, folder)  # the folder holds it whole: its staging copy goes
    assert not (staging / "ae_done" / "result.json").exists()
    assert (folder / "ae_done" / "result.json").read_text().count("epoch") == 2
    (staging / "ae_running" / "result.json").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    copy_staging(staging, folder)  # a running trial's logs are copied every time
    assert (folder / "ae_running" / "result.json").read_text().count("epoch") == 2
    assert (staging / "ae_running" / "result.json").exists()


def test_saves_grow_apart_as_the_state_grows_or_takes_longer_to_save(tmp_path):
    record = saving.of(tmp_path / "study")
    record.state_bytes = 100_000  # a few trials
    assert saving.period(0.01) == saving.SAVE_FLOOR_S
    assert abs(saving.period(0.5) - 9.5) < 1e-9  # saving stays 5% of the loop
    record.state_bytes = 31_000_000  # 1,000 trials: written at most SAVE_BYTES_PER_S
    assert saving.period(0.1) == 31_000_000 / saving.SAVE_BYTES_PER_S
    record.state_bytes = 0
