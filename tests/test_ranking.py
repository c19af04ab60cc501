"""The one ranking rule (study.trial.ranking), on trial tables shaped like `study.views.runs.study_runs`."""

from __future__ import annotations

import pandas as pd

from study.trial.ranking import DEGENERATE, FULL, STOPPED, best_per_model, rank, winners

MEAN_DIGIT = 0.067


def trial(trial_id, model, state, value, epoch=8, epochs=8, val_mse=0.03, metric="val_bce"):
    return {
        "trial_id": trial_id,
        "model": model,
        "state": state,
        metric: value,
        "epoch": epoch,
        "epochs": epochs,
        "val_mse": val_mse,
        "mean_digit_mse": MEAN_DIGIT,
    }


def test_full_budget_outranks_stopped_early_and_degenerate_comes_last():
    runs = pd.DataFrame(
        [
            trial("t1", "ae", "done", 0.30),
            trial("t2", "ae", "stopped early", 0.10, epoch=2),  # better value, fewer epochs
            trial("t3", "cae", "stopped early", 0.05, epoch=2),  # cae has only a stopped trial
            trial("t4", "vae", "done", 0.01, val_mse=0.07),  # no better than the mean digit
            trial("t5", "dae", "failed", 0.001, epoch=1),
            trial("t6", "dae", "running", 0.002, epoch=3),
            trial("t7", "vae", "done", 0.20),
        ]
    )
    ranked = rank(runs, "val_bce")
    assert list(ranked["trial_id"]) == ["t7", "t1", "t3", "t2", "t4"]
    assert list(ranked["tier"]) == [FULL, FULL, STOPPED, STOPPED, DEGENERATE]
    assert ranked.loc[ranked["trial_id"] == "t3", "standing"].item() == "stopped early at epoch 2"
    assert ranked.loc[ranked["trial_id"] == "t4", "standing"].item().startswith("degenerate")
    per_model = best_per_model(ranked)
    assert dict(zip(per_model["model"], per_model["trial_id"], strict=True)) == {
        "vae": "t7",
        "ae": "t1",
        "cae": "t3",
    }
    assert list(winners(ranked, per_model=False)["trial_id"]) == ["t7"]


def test_a_trial_short_of_its_budget_counts_as_stopped_whatever_its_tag():
    runs = pd.DataFrame([trial("t1", "ae", "done", 0.1, epoch=3), trial("t2", "ae", "done", 0.2)])
    assert list(rank(runs, "val_bce")["trial_id"]) == ["t2", "t1"]


def test_a_model_type_with_only_degenerate_trials_is_ranked_but_never_crowned():
    runs = pd.DataFrame(
        [trial("t1", "ae", "done", 0.3, val_mse=0.09), trial("t2", "vae", "done", 0.4)]
    )
    ranked = rank(runs, "val_bce")
    assert list(ranked["trial_id"]) == ["t2", "t1"]
    assert list(winners(ranked, per_model=True)["model"]) == ["vae"]


def test_direction_comes_from_the_metric():
    runs = pd.DataFrame(
        [
            trial("t1", "ae", "done", 0.80, metric="probe_acc"),
            trial("t2", "ae", "done", 0.90, metric="probe_acc"),
            trial("t3", "ae", "done", 0.85, metric="probe_acc"),
        ]
    )
    assert list(rank(runs, "probe_acc")["trial_id"]) == ["t2", "t3", "t1"]


def test_the_default_objective_ranks_hard_zero_outputs_the_same_whatever_the_clamp(monkeypatch):
    """Three relu-output reconstructions of real held-out digits, one with hard zeros on a few
    ink pixels: under the default objective their ranking and values do not move when BCE's
    clamp constant moves by six orders of magnitude, while val_bce's ranking does (which is
    why val_bce may rank only studies whose models all end in a sigmoid)."""
    import torch

    from models import AutoEncoder
    from study.trial import evaluate
    from study.trial.data import load_splits
    from study.trial.metrics import DEFAULT_OBJECTIVE

    x = load_splits("mnist-5k").val_x[:200]
    gen = torch.Generator().manual_seed(0)
    ink = (x > 0.5) & (torch.rand(x.shape, generator=gen) < 0.03)
    outputs = {
        "hard-zeros": x.masked_fill(ink, 0.0),  # exact elsewhere, 0 on 3% of the ink
        "blurry": 0.8 * x + 0.02,  # never 0 or 1
        "dim": 0.7 * x,  # zero only where the digit is
    }

    class Fixed(AutoEncoder):  # a relu output layer whose reconstruction is `out`
        def __init__(self, out):
            super().__init__(None)
            self.out = out

        output_activation = "relu"

        def encode(self, x):
            return torch.zeros(len(x), 1)

        def decode_logits(self, z):
            return self.out

    def ranked(eps: float, metric: str) -> tuple[list[str], list[float]]:
        monkeypatch.setattr(evaluate, "BCE_EPS", eps)
        rows = [
            {
                **trial(name, "ae", "done", 0.0, metric="unused"),
                **evaluate.reconstruction_metrics(Fixed(out), x, None),
            }
            for name, out in outputs.items()
        ]
        top = rank(pd.DataFrame(rows), metric)
        return list(top["trial_id"]), list(top[metric])

    assert DEFAULT_OBJECTIVE == "val_mse"
    assert ranked(1e-3, DEFAULT_OBJECTIVE) == ranked(1e-9, DEFAULT_OBJECTIVE)
    assert ranked(1e-3, "val_bce")[0] != ranked(1e-9, "val_bce")[0]


def test_views_rank_by_validation_and_test_numbers_never_choose():
    """Where validation and test disagree, the ranking follows validation; export refuses to
    rank by a test number."""
    import pytest

    from models import ConfigError
    from study.views.export import export_best

    runs = pd.DataFrame(
        [
            {**trial("t1", "ae", "done", 0.0, metric="unused", val_mse=0.020), "test_mse": 0.030},
            {**trial("t2", "ae", "done", 0.0, metric="unused", val_mse=0.025), "test_mse": 0.021},
        ]
    )
    assert list(rank(runs, "val_mse")["trial_id"]) == ["t1", "t2"]
    with pytest.raises(
        ConfigError, match=r"--metric test_mse: test numbers report a winner.*val_mse"
    ):
        export_best("sqlite:///unused.db", "s", "out", metric="test_mse")
