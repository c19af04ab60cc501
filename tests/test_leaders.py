"""The sweep's running standings (study.sweep.leaders) follow the one ranking rule: the best
trial they name is `rank`'s first, and every trial any view crowns led its model type when it
ended, so it got pictures and test numbers."""

from __future__ import annotations

import random

import pandas as pd

from study.sweep.leaders import Leaderboard, leaders
from study.trial.ranking import rank, winners


def random_rows(seed: int, count: int) -> list[dict]:
    draw = random.Random(seed)
    rows = []
    for i in range(count):
        epochs = 6
        epoch = draw.choice([2, 4, 6, 6])  # some stopped early by the scheduler
        rows.append(
            {
                "trial_id": f"t{i:04d}",
                "model": draw.choice(["ae", "dae", "vae"]),
                "state": draw.choice(["done", "failed"] if epoch == epochs else ["stopped early"]),
                "epoch": epoch,
                "epochs": epochs,
                "val_mse": draw.uniform(0.01, 0.08),
                "mean_digit_mse": 0.067,  # some are degenerate: no better than the mean digit
                "pca_mse": 0.03,
                "ended_at": float(i),
            }
        )
    return rows


def test_the_running_best_is_the_ranking_s_first_at_every_end():
    rows = random_rows(seed=1, count=300)
    board = Leaderboard("val_mse")
    for i, row in enumerate(rows):
        board.add(row)
        ranked = rank(pd.DataFrame(rows[: i + 1]), "val_mse")
        expected = ranked.iloc[0]["trial_id"] if len(ranked) else None
        assert (board.best or {}).get("trial_id") == expected


def test_every_trial_a_view_crowns_led_its_model_type_when_it_ended():
    for seed in range(5):
        rows = random_rows(seed=seed, count=400)
        led = leaders(rows, "val_mse")
        assert len(led) < len(rows) / 3  # the point: most trials are not drawn
        for end in (50, 200, 400):  # at any moment of the sweep
            ranked = rank(pd.DataFrame(rows[:end]), "val_mse")
            crowned = set(winners(ranked, per_model=True)["trial_id"])
            crowned |= set(winners(ranked, per_model=False)["trial_id"])
            assert crowned <= led, crowned - led
    failed = {r["trial_id"] for r in rows if r["state"] == "failed"}
    assert not failed & led  # a failed trial is not drawn
