"""The one list of metrics: each name, its direction and what it measures.

Space validation (which metrics may be an objective), the trainer's printed line, the tidy runs
table, the comparison table, export's `--metric` and docs/measuring.md's "What is measured" all read
this list, so a metric added here shows up everywhere and one left out is missing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models import ConfigError


@dataclass(frozen=True)
class Metric:
    name: str
    # "min" or "max" for a score (held out, comparable across models); None for the rest
    # (timings, sizes, the training loss)
    goal: str | None
    measures: str
    objective: bool = False  # may be a study's objective (held out, every model, every epoch)
    shown: bool = True  # a column of the comparison table
    printed: bool = False  # on `study train`'s line per epoch
    # Costs a good share of an epoch's training: in a sweep measured only where a trial may end
    # (ASHA's rungs and its last epoch), unless it is the study's objective.
    costly: bool = False


_ALL = (
    Metric(
        "val_mse",
        "min",
        "per-pixel MSE between clean held-out digits and their reconstructions "
        "(in the image range [0, 1]): the default objective",
        objective=True,
        printed=True,
    ),
    Metric(
        "val_bce",
        "min",
        "per-pixel BCE of clean held-out digits (outputs clamped into (0, 1)); "
        "an objective only where every model ends in a sigmoid",
        objective=True,
        printed=True,
    ),
    Metric(
        "denoise_mse",
        "min",
        "per-pixel MSE between clean held-out digits and the reconstruction "
        "of their noisy copies (x + 0.5·N(0,1), clipped)",
        objective=True,
        printed=True,
        costly=True,
    ),
    Metric(
        "probe_acc",
        "max",
        "held-out accuracy of a logistic (softmax) regression on frozen codes "
        "of 2,000 training digits",
        objective=True,
        printed=True,
        costly=True,
    ),
    Metric(
        "finetune_acc",
        "max",
        "held-out accuracy after the seed's supervised phase (softmax head "
        "on the code, encoder fine-tuned)",
        objective=True,
    ),
    Metric(
        "kl",
        "min",
        "VAE: KL divergence of the posterior q(z∣x) from N(0, I) per held-out digit",
        printed=True,
    ),
    Metric(
        "recon_kl",
        "min",
        "VAE: reconstruction loss summed over pixels + KL per held-out digit "
        "(the negative ELBO only when the reconstruction loss is BCE)",
        printed=True,
    ),
    Metric(
        "pca_mse",
        None,
        "val_mse of PCA with as many components as the trial's code, fitted on "
        "the same training digits: the linear baseline an autoencoder should beat",
    ),
    Metric(
        "test_mse",
        "min",
        "val_mse on the data set's test split (never used to select), from "
        "the trial's final checkpoint",
    ),
    Metric("test_bce", "min", "val_bce on the test split"),
    Metric("test_denoise_mse", "min", "denoise_mse on the test split", shown=False),
    Metric("test_probe_acc", "max", "probe_acc on the test split", shown=False),
    Metric("test_pca_mse", None, "pca_mse on the test split"),
    Metric(
        "mean_digit_mse",
        None,
        "val_mse of predicting the training digits' mean for every "
        "held-out digit: a trial no better than this is degenerate",
        shown=False,
    ),
    Metric(
        "train_loss",
        None,
        "the model's own training loss, on training digits and in its own "
        "units (the VAE's ~100x the others'): not a score, never ranked by",
        shown=False,
        printed=True,
    ),
    Metric("params", None, "number of parameters"),
    Metric("epoch", None, "epochs trained (in MLflow the run's tag aestudy.epochs)"),
    Metric("train_seconds", None, "training time, pretraining included, evaluation not"),
    Metric("epoch_seconds", None, "one epoch's training time", shown=False),
    Metric("eval_seconds", None, "one epoch's evaluation time", shown=False),
    Metric("pretrain_seconds", None, "SDAE: layer-wise pretraining time", shown=False),
)

# Ranks trials across model types: defined for every model's output (images in [0, 1]) with no
# tuning constant. val_bce needs a clamp for outputs of exactly 0 or 1, which only non-sigmoid
# output layers produce, and its value for them depends on that clamp (see docs/measuring.md).
DEFAULT_OBJECTIVE = "val_mse"
# Scored once per trial, on the test split, from its final checkpoint: reported, never ranked by.
TEST_METRICS: tuple[str, ...] = tuple(m.name for m in _ALL if m.name.startswith("test_"))

METRICS: dict[str, Metric] = {m.name: m for m in _ALL}
OBJECTIVES: dict[str, str] = {m.name: m.goal for m in _ALL if m.objective and m.goal}
SCORES: dict[str, str] = {m.name: m.goal for m in _ALL if m.goal}
SHOWN: tuple[str, ...] = tuple(m.name for m in _ALL if m.shown)
PRINTED: tuple[str, ...] = tuple(m.name for m in _ALL if m.printed)
COSTLY: tuple[str, ...] = tuple(m.name for m in _ALL if m.costly)
# A trial's own time in an epoch (training, evaluation, pretraining): what the summaries and
# benchmarks count as its work, and what a retry from the previous checkpoint re-does.
OWN_SECONDS: tuple[str, ...] = ("epoch_seconds", "eval_seconds", "pretrain_seconds")


def goal(name: str) -> str:
    """'min' or 'max' for a score; ConfigError naming the scores for anything else."""
    if name not in SCORES:
        raise ConfigError(f"unknown metric {name!r}; choose one of {', '.join(SCORES)}")
    return SCORES[name]


def test_counterpart(name: str) -> str | None:
    """The test split's version of a held-out metric (val_mse -> test_mse), if it has one."""
    candidate = "test_" + name.removeprefix("val_")
    return candidate if candidate in METRICS else None


def sign(name: str) -> int:
    """+1 where lower is better, -1 where higher is: `sign * value` sorts best first."""
    return 1 if goal(name) == "min" else -1


def degenerate(values: Any) -> Any:
    """Whether a trial is no better on held-out digits than predicting the mean digit
    (`val_mse >= mean_digit_mse`): it has learnt nothing. `values` is a mapping of one trial's
    metrics (a bool back) or a frame of trials (a boolean column back); a missing number is
    False."""
    nan = float("nan")
    return values.get("val_mse", nan) >= values.get("mean_digit_mse", nan)
