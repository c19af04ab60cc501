"""Numbers that mean what they say: the metric registry, the table's repeats, the seed rows.
Fast: synthetic trial tables shaped like `study.views.runs.study_runs`, and one short training."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.seed import seed_comparison
from analysis.table import build_table
from study.sweep.space_file import parse_space
from study.trial.metrics import METRICS, OBJECTIVES, PRINTED
from study.trial.ranking import rank
from study.trial.trainer import train
from tests.harness.studies import with_change


def runs_frame(rows: list[dict]) -> pd.DataFrame:
    base = {
        "run_id": "",
        "error": None,
        "given": None,
        "state": "done",
        "epoch": 2,
        "epochs": 2,
        "val_mse": 0.03,
        "mean_digit_mse": 0.067,
        "latent_dim": 2,
        "activation": "tanh",
        "recon_loss": "mse",
        "lr": 0.001,
        "dataset": "mnist-5k",
    }
    frame = pd.DataFrame([{**base, "run_id": r["trial_id"], **r} for r in rows])
    for metric in METRICS:
        if metric not in frame:
            frame[metric] = np.nan
    return frame


def test_every_metric_the_trainer_reports_is_in_the_registry(tiny_config):
    history = train({**tiny_config, "model": "vae", "epochs": 1, "finetune_epochs": 1})
    assert set(history[-1]) <= set(METRICS), set(history[-1]) - set(METRICS)
    assert {"kl", "recon_kl", "mean_digit_mse"} <= set(history[-1])
    assert set(PRINTED) <= set(METRICS) and set(OBJECTIVES) <= set(METRICS)


def test_objectives_a_space_accepts_are_the_registry_s():
    for name in OBJECTIVES:
        raw = with_change("objective", name)
        raw["fixed"]["finetune_epochs"] = 1  # finetune_acc exists only with the supervised phase
        raw["scheduler"] = {"type": "none"}  # finetune_acc has no value at ASHA's rungs
        raw["params"]["model"] = ["vae"]  # val_bce ranks only models that end in a sigmoid
        del raw["params"]["noise"]  # the dae's
        assert parse_space(raw, "s.yaml").mode == OBJECTIVES[name]


def test_a_seed_row_stays_empty_without_a_trial_that_meets_its_conditions():
    # every VAE trained with MSE: the seed's BCE row must not show the MSE VAE's number
    runs = runs_frame(
        [
            {
                "trial_id": "t1",
                "model": "vae",
                "recon_loss": "mse",
                "val_bce": 0.2,
                "recon_kl": 37.7,
            },
            {
                "trial_id": "t2",
                "model": "ae",
                "activation": "relu",
                "val_bce": 0.3,
                "val_mse": 0.05,
            },
            {"trial_id": "t3", "model": "cae", "latent_dim": np.nan, "val_bce": 0.25},  # 2 -> 2.0
        ]
    )
    seed = seed_comparison(rank(runs, "val_bce")).set_index(["model", "seed setting"])
    assert list(seed.columns[:2]) == ["seed", "seed measured"]
    bce = seed.loc[("vae", "BCE + KL, latent 2, 50 epochs")]
    assert bce["ours"].startswith("–") and "recon_loss = bce" in bce["ours"]
    assert seed.loc[("vae", "MSE + KL, latent 2, 50 epochs"), "ours"] == "37.7"
    # the relu AE fills the relu row only, never the tanh one
    assert seed.loc[("ae", "relu, latent 2"), "ours"] == "0.05"
    assert seed.loc[("ae", "tanh, latent 2, 100 epochs"), "ours"].startswith("–")


def test_a_seed_row_needs_the_seed_s_latent_size():
    runs = runs_frame(
        [
            {
                "trial_id": "t1",
                "model": "vae",
                "recon_loss": "bce",
                "latent_dim": 16,
                "val_bce": 0.2,
                "recon_kl": 120.0,
            }
        ]
    )
    seed = seed_comparison(rank(runs, "val_bce")).set_index(["model", "seed setting"])
    assert "latent_dim = 2" in seed.loc[("vae", "BCE + KL, latent 2, 50 epochs"), "ours"]


def test_the_table_s_n_counts_distinct_seeds():
    runs = runs_frame(
        [
            {"trial_id": "t1", "model": "ae", "seed": 0, "val_bce": 0.20},
            {"trial_id": "t2", "model": "ae", "seed": 0, "val_bce": 0.20},  # the same seed twice
            {"trial_id": "t3", "model": "ae", "seed": 1, "val_bce": 0.24},
            {
                "trial_id": "t4",
                "model": "ae",
                "seed": 0,
                "val_bce": 0.30,
                "lr": 0.01,
            },  # other settings
        ]
    )
    table = build_table(runs, "val_bce", [])
    assert table.loc[0, "n"] == 2
    assert abs(table.loc[0, "val_bce"] - 0.22) < 1e-12


def test_the_docs_describe_every_metric():
    from tests.harness.tool import ROOT

    page = (ROOT / "docs" / "measuring.md").read_text()
    for name, metric in METRICS.items():
        assert f"| `{name}` |" in page and metric.measures in page, name


def test_parallel_coordinates_label_every_axis_and_show_absent_parameters(tmp_path):
    from analysis.plots import parallel_coordinates

    runs = runs_frame(
        [
            {
                "trial_id": f"t{i}",
                "model": model,
                "noise": noise,
                "latent_dim": latent,
                "val_bce": v,
            }
            for i, (model, noise, latent, v) in enumerate(
                [
                    ("dae", 0.2, 4, 0.25),
                    ("dae", 0.5, 8, 0.22),
                    ("vae", np.nan, 16, 0.18),
                    ("vae", np.nan, 32, 0.17),
                    ("ae", np.nan, 8, 0.30),
                ]
            )
        ]
    )
    png, html = parallel_coordinates(runs, "val_bce", ["model", "latent_dim", "noise"], tmp_path)
    assert png.stat().st_size > 10_000
    text = html.read_text()
    for label in ('"ticktext":["ae","dae","vae"]', '"absent"', '"text":"val_bce"'):
        assert label in text, label
    assert "-1" not in text.split('"values":[')[3].split("]")[0]  # no made-up value for absent
    assert parallel_coordinates(runs.head(4), "val_bce", ["model"], tmp_path) == []
