"""The one trainer: `train(config)` runs one trial and returns its metrics per epoch. No Ray needed.

Ray Tune calls it through `study.sweep.trainable`; the command line through `python -m study train`.
Every epoch it scores the model on held-out digits (see `study.trial.evaluate`) and hands the metrics and
a checkpoint writer to `on_epoch`, so a caller can report, checkpoint or stop.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

import models
from models import AutoEncoder, Classifier
from study.trial.config import TrainSettings, split_config
from study.trial.data import Splits, load_splits
from study.trial.evaluate import (
    PCA,
    Probe,
    eval_noise,
    fit_probe,
    mean_digit_mse,
    noisy_copy,
    reconstruction_metrics,
)


@dataclass
class EpochContext:
    """What an `on_epoch` callback may use besides the metrics."""

    model: AutoEncoder
    data: Splits
    history: list[dict[str, float]]
    save: Callable[
        ..., Path
    ]  # save(path, training=True): a checkpoint; training=False: weights only


EpochCallback = Callable[[dict[str, float], EpochContext], None]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def arrange_determinism(device: torch.device) -> None:
    """On a GPU, ask torch for the deterministic kernels that make a seed (and a resumed run)
    reproduce its numbers, as they do on the CPU: cuDNN's deterministic convolutions without
    autotuning, cuBLAS's fixed workspace (read when CUDA starts, so set before), and
    `use_deterministic_algorithms` (warn-only: an op with no deterministic kernel warns rather
    than fails the trial). Their cost on a GPU is not measured here (no GPU was lent)."""
    if device.type != "cuda":
        return  # the CPU kernels used here are deterministic already
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass(frozen=True)
class TrialData:
    """What every trial on one device scores against: the splits on that device, the fixed noisy
    copies of the held-out digits, the mean digit's val_mse and the training digits' PCA."""

    splits: Splits
    val_noisy: torch.Tensor
    test_noisy: torch.Tensor | None
    baseline: float
    pca: PCA


@lru_cache(maxsize=4)
def trial_data(dataset: str, data_dir: str | None, device: str) -> TrialData:
    """Made once per process and device: a reused Ray worker neither reads the data nor copies it
    to its GPU again for its next trial."""
    splits = load_splits(dataset, data_dir).to(device)
    test_noisy = None if splits.test_x is None else noisy_copy(splits.test_x)
    baseline = mean_digit_mse(splits.train_x, splits.val_x)
    return TrialData(
        splits, noisy_copy(splits.val_x), test_noisy, baseline, PCA.fit(splits.train_x)
    )


def adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """The trainer's optimizer. Fused where torch has a fused Adam for the parameters' device
    (one kernel for all parameters): on 2 CPU cores it made the seed AE's epoch ~14% faster, with
    the same losses to 6 decimals (benchmarks/loader_throughput.py uses it for both loops)."""
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


def train(
    config: dict[str, Any],
    *,
    on_epoch: EpochCallback | None = None,
    resume_from: str | Path | None = None,
    out_dir: str | Path | None = None,
    costly_epochs: Collection[int] | None = None,
    score_test: bool = True,
) -> list[dict[str, float]]:
    """Train one trial described by the flat `config`; return one metrics dict per epoch.

    The costly metrics (`study.trial.metrics.COSTLY`: denoising and the probe) are measured at
    `costly_epochs` and the last epoch; None: every epoch. With `score_test`, the last epoch's
    metrics include the test split's (`test_metrics`); a sweep scores it from each trial's final
    checkpoint instead, wherever the trial ended (study.sweep.pictures).

    `resume_from` is a checkpoint directory written by this trainer: training continues after its
    epoch with the same optimizer and RNG state, so a resumed run matches an uninterrupted one.
    `out_dir` receives the final checkpoint.
    """
    settings, model_config = split_config(config)
    record = {**asdict(settings), **asdict(model_config)}  # what the checkpoint records
    device = resolve_device(settings.device)
    arrange_determinism(device)
    torch.manual_seed(settings.seed)
    cached = trial_data(settings.dataset, settings.data_dir, str(device))
    data = cached.splits
    model = models.MODELS[settings.model](model_config).to(device)
    optimizer = adam(model.parameters(), settings.lr)
    gen = torch.Generator(device=device).manual_seed(settings.seed)
    history: list[dict[str, float]] = []
    if resume_from is not None:
        history = _restore(resume_from, model, optimizer, gen, device)

    def save(path: str | Path, training: bool = True) -> Path:
        if not training:
            return models.save(path, model, trial_config=record)
        rng = {
            "optimizer": optimizer.state_dict(),
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        state = {"epoch": len(history), "history": history}
        return models.save(path, model, trial_config=record, training=rng, state=state)

    context = EpochContext(model=model, data=data, history=history, save=save)

    pretrain_seconds = 0.0
    if not history and model.pretrain_stages():
        pretrain_seconds = pretrain_layerwise(model, data.train_x, settings, gen)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        clean = data.train_x[idx]  # gathered once: input (corrupted) and target
        return model(model.corrupt(clean, gen), clean, gen).loss

    for epoch in range(len(history) + 1, settings.epochs + 1):
        model.train()
        start = time.perf_counter()
        train_loss = run_epoch(
            batch_loss, optimizer, len(data.train_x), settings.batch_size, gen, f"epoch {epoch}"
        )
        metrics: dict[str, float] = {
            "epoch": epoch,
            "train_loss": train_loss,
            "epoch_seconds": time.perf_counter() - start,
            "params": model.num_params(),
        }
        if pretrain_seconds:
            metrics["pretrain_seconds"], pretrain_seconds = pretrain_seconds, 0.0
        # Cumulative training time (pretraining included, evaluation not): the final value is the
        # trial's total, whatever epoch a scheduler stops it at.
        earlier = history[-1]["train_seconds"] if history else 0.0
        metrics["train_seconds"] = (
            earlier + metrics["epoch_seconds"] + metrics.get("pretrain_seconds", 0.0)
        )
        final = epoch == settings.epochs
        costly = costly_epochs is None or epoch in costly_epochs or final
        metrics.update(evaluate(model, cached, costly, final and score_test))
        if final and settings.finetune_epochs > 0:
            metrics["finetune_acc"] = finetune(model, data, settings, gen)
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(metrics, context)
    if out_dir is not None:
        save(out_dir)
    return history


def evaluate(
    model: AutoEncoder, cached: TrialData, costly: bool = True, test: bool = False
) -> dict[str, float]:
    """The held-out metrics of one epoch, with the baselines to read them against; the costly
    ones (denoising, the probe) only if `costly`, and with `test` (which implies `costly`) the
    test split's too, scored by the same fitted probe."""
    model.eval()
    start = time.perf_counter()
    data, costly = cached.splits, costly or test
    metrics = reconstruction_metrics(model, data.val_x, cached.val_noisy if costly else None)
    probe = None
    if costly:
        probe = fit_probe(model, data.train_x, data.train_y)
        metrics["probe_acc"] = probe.accuracy(model, data.val_x, data.val_y)
    metrics.update(model.extra_metrics(data.val_x, eval_noise()))
    metrics["mean_digit_mse"] = cached.baseline
    metrics["pca_mse"] = cached.pca.mse(data.val_x, model.code_dim)
    if test:
        metrics.update(test_metrics(model, cached, probe))
    metrics["eval_seconds"] = time.perf_counter() - start  # evaluation, all of it
    return metrics


def test_metrics(
    model: AutoEncoder, cached: TrialData, probe: Probe | None = None
) -> dict[str, float]:
    """The test split's numbers (`study.trial.metrics.TEST_METRICS`; none where the data set has no
    test split): what a trial reports, never what it is selected by. `probe` is the one fitted
    on the training digits for probe_acc, or None to fit it here."""
    data = cached.splits
    if data.test_x is None:
        return {}
    model.eval()
    probe = probe or fit_probe(model, data.train_x, data.train_y)
    metrics = reconstruction_metrics(model, data.test_x, cached.test_noisy, "test_")
    metrics["test_probe_acc"] = probe.accuracy(model, data.test_x, data.test_y)
    metrics["test_pca_mse"] = cached.pca.mse(data.test_x, model.code_dim)
    return metrics


def finetune(
    model: AutoEncoder, data: Splits, settings: TrainSettings, gen: torch.Generator
) -> float:
    """The seed's supervised phase on a copy of the encoder; held-out accuracy."""
    clf = Classifier(model).to(data.train_x.device)
    optimizer = adam(clf.parameters(), settings.lr)
    clf.train()
    for e in range(settings.finetune_epochs):
        run_epoch(
            lambda idx: F.cross_entropy(clf(data.train_x[idx]), data.train_y[idx]),
            optimizer,
            len(data.train_x),
            settings.batch_size,
            gen,
            f"fine-tuning epoch {e + 1}",
        )
    clf.eval()
    with torch.no_grad():
        return (clf(data.val_x).argmax(1) == data.val_y).float().mean().item()


def pretrain_layerwise(
    model: AutoEncoder, train_x: torch.Tensor, settings: TrainSettings, gen: torch.Generator
) -> float:
    """Greedy layer-wise pretraining of a stacked DAE; returns the seconds it took."""
    start = time.perf_counter()
    for i, stage in enumerate(model.pretrain_stages()):
        h = stage.inputs(train_x)  # codes of the frozen layers below, computed once per stage
        optimizer = adam(stage.trainable_parameters(), settings.lr)
        for e in range(stage.epochs):
            run_epoch(
                lambda idx, h=h, stage=stage: stage(stage.corrupt(h[idx], gen), h[idx]).loss,
                optimizer,
                len(h),
                settings.batch_size,
                gen,
                f"pretraining layer {i + 1} epoch {e + 1}",
            )
    return time.perf_counter() - start


def run_epoch(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    n: int,
    batch_size: int,
    gen: torch.Generator,
    where: str,
) -> float:
    """One pass over `n` examples in shuffled batches; returns the mean loss.

    The loss is summed on the device and read once per epoch (no per-batch sync on a GPU); a NaN
    or infinity anywhere in the epoch survives the sum and is caught here, by its value.
    """
    total = torch.zeros((), device=gen.device)
    for idx in batches(n, batch_size, gen):
        loss = loss_fn(idx)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total.add_(loss.detach(), alpha=len(idx))
    mean = (total / n).item()
    if not math.isfinite(mean):
        raise TrainingDiverged(
            f"training diverged in {where}: its loss became {mean}; the trial is stopped: lower "
            "the learning rate (--lr) and check the model's settings"
        )
    return mean


def batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches, drawn on the data's device."""
    perm = torch.randperm(n, generator=gen, device=gen.device)
    for i in range(0, n, batch_size):
        yield perm[i : i + batch_size]


def _restore(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    gen: torch.Generator,
    device: torch.device,
) -> list[dict[str, float]]:
    """Load a training checkpoint into the live objects; returns the metrics history so far."""
    restored = models.load(path, device)
    model.load_state_dict(restored.state_dict())
    # RNG states must be CPU byte tensors; Adam moves its own state to the parameters' device.
    training, state = models.load_training_state(path, "cpu")
    optimizer.load_state_dict(training["optimizer"])
    gen.set_state(training["generator"])
    torch.set_rng_state(training["torch_rng"])
    return list(state["history"])
