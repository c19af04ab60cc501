"""A trial's final report, made once, by the driver, from the checkpoint of its final epoch:
its pictures and its test split's numbers (`study.trial.trainer.test_metrics`).

It is made for the trials that lead their model type when they end (`study.sweep.leaders`):
every trial a view may crown was one, so it has test numbers; at scale the others, nearly all,
cost the driver nothing. The test split is scored here, wherever the trial ended (its last
epoch, or the rung where ASHA stopped it); no trial scores it while it runs, so nothing the
sweep decides (ASHA, the sampler) can see it.

Drawing them in the trial (at each of ASHA's rungs, since a trial cannot know whether it will be
stopped there) cost ~1 s of the lane per rung on 2 CPU cores, most of it matplotlib laying out
text, while the accelerator waited. The driver knows when a trial has ended and which checkpoint
is its last; it draws there, on the thread that closes the trial's run (study.sweep.progress), while
the lanes train the next trials. A driver killed before drawing leaves the run without the
PICTURES tag; the next `fit` of the study makes what is missing (`catch_up`).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import models
from study import tracking
from study.trial.config import split_config


def draw(checkpoint: Path, folder: Path) -> tuple[int, dict[str, float]]:
    """Every picture of the trial whose training checkpoint is `checkpoint`, into `folder`, and
    its test split's numbers; returns the checkpoint's epoch and those numbers. The model, its
    history and its data's digits all come from the checkpoint, on the CPU."""
    from study.trial.figures import trial_pictures
    from study.trial.trainer import test_metrics, trial_data

    model = models.load(checkpoint, "cpu")
    _, state = models.load_training_state(checkpoint, "cpu")
    settings, _ = split_config(models.read_config(checkpoint)["trial_config"])
    cached = trial_data(settings.dataset, settings.data_dir, "cpu")
    splits = cached.splits
    trial_pictures(model, splits.val_x, splits.val_y, state["history"], folder)
    return int(state["epoch"]), test_metrics(model, cached)


def log_final(uri: str, run_id: str, checkpoint) -> None:
    """Draw the pictures of `checkpoint` (Tune's), score its test split, and log both to the
    run, replacing any earlier ones."""
    with tempfile.TemporaryDirectory() as tmp, on_this_machine(checkpoint) as folder:
        epoch, numbers = draw(folder, Path(tmp))
        tracking.log_final(uri, run_id, Path(tmp), epoch, numbers)


@contextlib.contextmanager
def on_this_machine(checkpoint) -> Iterator[Path]:
    """A Tune checkpoint's folder here: itself in a study folder, else (a study in a bucket) a
    copy downloaded for the block."""
    path = Path(checkpoint.path)
    if path.is_absolute() and path.is_dir():
        yield path
        return
    with checkpoint.as_directory() as folder:
        yield Path(folder)


def catch_up(record: tracking.StudyRecord, ended: list) -> int:
    """Draw the pictures of `ended` trials (Tune's, finished) whose runs lack them: a driver
    was killed before it drew them. Returns how many runs got pictures. A failure is a
    warning, never an error: the trials' results stand without their pictures."""
    lacking = tracking.runs_without_pictures(record.uri, record.experiment_id)
    drawn = 0
    for trial in ended:
        run_id = lacking.get(trial.trial_id)
        if not getattr(trial.checkpoint, "path", None) or not run_id:
            continue
        try:
            log_final(record.uri, run_id, trial.checkpoint)
            drawn += 1
        except Exception as exc:
            print(f"warning: no pictures for trial {trial.trial_id}: {exc}", flush=True)
    return drawn
