"""The Ray Tune function trainable: one trial = `study.trial.trainer.train` with reporting, checkpoints
and its MLflow run.

It depends on `config` alone (plus what `tune.with_parameters` binds: threads and the study's
MLflow record, the epochs where it may end, the checkpoint cadence), reports every epoch (with
a checkpoint where due, see `run_trial`), and resumes from `tune.get_checkpoint()` when Tune
restarts it after a failure or a resumed sweep.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune
from ray.tune.result import SHOULD_CHECKPOINT

from models import ConfigError
from study.sweep import hooks
from study.tracking import THREADS, StudyRecord, TrialRun, run_tags
from study.trial.config import flat_config
from study.trial.metrics import OBJECTIVES, OWN_SECONDS
from study.trial.trainer import EpochContext, TrainingDiverged, resolve_device, train

# A trial that ends with this key in its last result failed for good (study.sweep.progress.trial_state).
FAILED = "failed_for_good"
DETERMINISTIC = (TrainingDiverged, ConfigError)


def run_trial(
    config: dict[str, Any],
    threads: int = 1,
    record: StudyRecord | None = None,
    stop_epochs: tuple[int, ...] = (),
    costly_every_epoch: bool = False,
    checkpoint_every: float = 0.0,
    test_hooks: hooks.Hooks | None = None,
) -> None:
    """Train one trial under Tune, logging to the study's MLflow experiment when `record` is given.

    The weights are logged at `stop_epochs` (the scheduler's rungs, where ASHA may stop a trial)
    and at the trial's last epoch, so every trial's run ends with the weights of its final state
    without uploading them every epoch. The costly metrics (denoising, the probe) are measured at
    the same epochs, unless `costly_every_epoch` (the objective is one of them). Its pictures are
    drawn by the driver once it has ended (study.sweep.pictures).

    A Tune checkpoint (weights, optimizer and RNG state: what a retry or `resume` restarts from)
    is written at the same epochs, and once the epochs since the previous checkpoint took
    `checkpoint_every` seconds of training and evaluation (0: every epoch). Written and copied
    into the study folder every epoch, it took up to a tenth of a short epoch; a retry now
    re-trains at most about `checkpoint_every` seconds of epochs (the same numbers: the RNG state
    is checkpointed). Counted in the trial's own time, not the clock's: what a retry loses.

    `test_hooks`: the testing hooks (study.sweep.hooks) the driver's environment set.
    """
    torch.set_num_threads(max(1, threads))
    trial_config = flat_config(config)
    trial_id = tune.get_context().get_trial_id()
    node_id = ray.get_runtime_context().get_node_id()  # which machine ran it, for multi-node checks
    run = None
    if record:
        environment = environment_tags(trial_config, threads)
        tags = run_tags(record.study, trial_id, trial_config, environment)
        run = TrialRun(record, trial_id, trial_config, tags)
    last_epoch = int(trial_config.get("epochs", 10))
    costly_epochs = None if costly_every_epoch else frozenset(stop_epochs)

    in_tune = [0.0]  # seconds the previous tune.report took (see below)
    unsaved = [0.0]  # seconds of the epochs trained since the last checkpoint

    def report(metrics: dict[str, float], context: EpochContext) -> None:
        epoch = int(metrics["epoch"])
        extra = {"node_id": node_id, "mlflow_run_id": run.run_id if run else ""}
        # tune.report copies any checkpoint to the study folder, then waits until Tune's driver
        # has handled the result and asks for the next epoch: a round trip per epoch.
        extra["report_seconds"] = in_tune[0]
        # Where the epoch's time outside training went, for Tune's results only (progress.csv;
        # benchmarks/sweep_overhead.py reads them): they are measured after MLflow's log.
        clock = time.perf_counter()
        # MLflow first: when ASHA stops a trial, tune.report does not return. A retried trial
        # re-trains the epochs after its checkpoint; TrialRun skips epochs it has logged.
        may_end = epoch in stop_epochs or epoch == last_epoch
        if run is not None:
            run.log_epoch(metrics)
            extra["mlflow_seconds"], clock = time.perf_counter() - clock, time.perf_counter()
            if may_end:
                log_weights(run, context)
            extra["weights_seconds"], clock = time.perf_counter() - clock, time.perf_counter()
        unsaved[0] += sum(metrics.get(k, 0.0) for k in OWN_SECONDS)
        due = may_end or unsaved[0] >= checkpoint_every
        result = tune_result(metrics, extra, checkpointed=due)
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if due:
                context.save(tmp)
                checkpoint, unsaved[0] = tune.Checkpoint.from_directory(tmp), 0.0
            result["checkpoint_seconds"] = time.perf_counter() - clock
            clock = time.perf_counter()
            tune.report(result, checkpoint=checkpoint)
            in_tune[0] = time.perf_counter() - clock
        hooks.after_report(test_hooks or {}, trial_id, epoch)

    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            train(trial_config, on_epoch=report, costly_epochs=costly_epochs, score_test=False)
            return
        with checkpoint.as_directory() as resume_dir:
            train(
                trial_config,
                on_epoch=report,
                resume_from=resume_dir,
                costly_epochs=costly_epochs,
                score_test=False,
            )
    except DETERMINISTIC as exc:
        # Trained again from its checkpoint, the same config fails the same way: end the trial
        # now, failed, rather than let Tune retry it --max-failures times.
        if run is not None:
            run.record_error(exc)
        tune.report({**{m: float("nan") for m in OBJECTIVES}, FAILED: str(exc).splitlines()[0]})
    except Exception as exc:
        # The worker knows the error; the driver's callback only learns that the trial failed.
        if run is not None:
            run.record_error(exc)
        raise


# What a trial reports to Tune: what the scheduler, the searcher, the driver's standings and
# its summaries read. Tune keeps, per trial and per key it is given, a history in the state it
# saves: with every metric (the test split's, always empty in a trial, included) that was 31 KB
# a trial. Every metric is in the trial's MLflow run.
TUNE_METRICS = (*OBJECTIVES, "mean_digit_mse", "pca_mse", "train_loss", "epoch", *OWN_SECONDS)


def tune_result(
    metrics: dict[str, float], extra: dict[str, Any], checkpointed: bool
) -> dict[str, Any]:
    """One epoch's report to Tune: the same keys in the same order every epoch.

    Tune's progress.csv takes its columns, and their order, from the first report of each
    session, without writing a new header: a restored trial whose first report had other keys,
    or the same keys in another order, wrote rows pandas cannot read or misread. So every key of
    TUNE_METRICS is there (NaN where not measured this epoch: costly ones between rungs), in
    that order, and Tune's own checkpoint flag (which Tune adds only to reports with a
    checkpoint) on every report.
    """
    nan = float("nan")
    measured = {key: metrics.get(key, nan) for key in TUNE_METRICS}
    return {**measured, **extra, SHOULD_CHECKPOINT: checkpointed}


def log_weights(run: TrialRun, context: EpochContext) -> None:
    """A weights-only checkpoint (what `export` serves), replacing the previous one."""
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp, "checkpoint")
        context.save(weights, training=False)
        run.log_artifacts(weights, "checkpoint")


def environment_tags(config: dict[str, Any], threads: int) -> dict[str, str]:
    """What runs the trial: its device, torch's threads and the versions of Ray and torch."""
    return {
        "aestudy.device": str(resolve_device(str(config.get("device", "auto")))),
        THREADS: str(max(1, threads)),
        "aestudy.ray_version": ray.__version__,
        "aestudy.torch_version": torch.__version__,
    }
