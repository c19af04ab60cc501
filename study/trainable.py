"""The Ray Tune function trainable: one trial = `study.trainer.train` with reporting and checkpoints.

It depends on `config` alone (plus the thread count Tune gives it), reports every epoch with a
checkpoint, and resumes from `tune.get_checkpoint()` when Tune restarts it after a failure or a
resumed sweep.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from study.config import flat_config
from study.trainer import train

# Testing hook for retries: with AESTUDY_FAIL_ONCE_AT_EPOCH=N and AESTUDY_FAIL_MARKERS=DIR, every
# trial raises once, right after reporting epoch N; the marker file in DIR makes it once only.
FAIL_AT_ENV, FAIL_MARKERS_ENV = "AESTUDY_FAIL_ONCE_AT_EPOCH", "AESTUDY_FAIL_MARKERS"


class InjectedFailure(RuntimeError):
    """Raised by the testing hook above."""


def run_trial(config: dict[str, Any], threads: int = 1) -> None:
    """Train one trial under Tune."""
    torch.set_num_threads(max(1, threads))
    trial_config = flat_config(config)
    trial_id = tune.get_context().get_trial_id()
    node_id = ray.get_runtime_context().get_node_id()  # which machine ran it, for multi-node checks

    def report(metrics: dict[str, float], save) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            save(tmp)
            tune.report(
                {**metrics, "node_id": node_id}, checkpoint=tune.Checkpoint.from_directory(tmp)
            )
        _maybe_fail(trial_id, int(metrics["epoch"]))

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        train(trial_config, on_epoch=report)
        return
    with checkpoint.as_directory() as resume_dir:
        train(trial_config, on_epoch=report, resume_from=resume_dir)


def _maybe_fail(trial_id: str, epoch: int) -> None:
    at, markers = os.environ.get(FAIL_AT_ENV), os.environ.get(FAIL_MARKERS_ENV)
    if not at or not markers or int(at) != epoch:
        return
    marker = Path(markers) / trial_id
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(epoch))
        raise InjectedFailure(f"injected failure in trial {trial_id} after epoch {epoch}")
