"""The one ranking rule: which trial is best, for every view of a study.

The sweep's summary and progress lines, `status`, `best`, `list`, `table`, the plots, `export`
(and so the registry's `champion` aliases) and docs/RESULTS.md all rank with `rank`. The rule:

1. Only trials that finished (ran all their epochs, or were stopped early by the scheduler) and
   have a value for the metric take part; failed and running trials do not.
2. Tiers, each outranking the next whatever the values: trials that ran their full budget;
   trials stopped early (their numbers come from fewer epochs); degenerate trials, no better on
   held-out digits than predicting the mean digit (`val_mse >= mean_digit_mse`).
3. Within a tier, the metric in its direction (`study.trial.metrics`), then the trial id.

Degenerate trials are ranked (and shown) but never crowned: `winners` leaves them out. A trial
no better than PCA with as many components as its code (`pca_mse`) is marked so in its standing,
but keeps its tier: PCA is the bar a good autoencoder clears, the mean digit the bar below which
a trial has learnt nothing (see docs/measuring.md, "The ranking rule").

Only held-out validation numbers rank; the test split's are reported beside them, never ranked by.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from study.trial.metrics import degenerate, sign
from study.trial.states import FINISHED, TrialState

FULL, STOPPED, DEGENERATE = 0, 1, 2
ADDED = ("stopped", "tier", "standing", "rank")


def standing(row: Mapping[str, Any]) -> str:
    """How a ranked trial stands, in words: '' for a full-budget trial that beat the mean digit
    and PCA at its code size."""
    words = [f"stopped early at epoch {int(row['epoch'])}"] if stopped(row) else []
    if tier(row) == DEGENERATE:
        words.append(
            f"degenerate: val_mse {row['val_mse']:.4f} >= the mean digit's {row['mean_digit_mse']:.4f}"
        )
    elif below_pca(row):
        words.append(f"no better than PCA: val_mse {row['val_mse']:.4f} >= {row['pca_mse']:.4f}")
    return "; ".join(words)


def below_pca(row: Mapping[str, Any]) -> bool:
    """Whether a trial's reconstructions are no better than PCA's with as many components as
    its code, fitted on the same training digits (False where either number is missing)."""
    return bool(row.get("val_mse", float("nan")) >= row.get("pca_mse", float("nan")))


def stopped(row: Mapping[str, Any]) -> bool:
    """Stopped early: fewer epochs trained than the budget, whatever the state tag says."""
    return bool(row["state"] == TrialState.STOPPED or row["epoch"] < _number(row.get("epochs")))


def _number(value: Any) -> float:
    """A budget as recorded (an int, a tag's text, missing) as a number; NaN where none."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def tier(row: Mapping[str, Any]) -> int:
    """A finished trial's tier: FULL, STOPPED or DEGENERATE (rule 2 above)."""
    if degenerate(row):
        return DEGENERATE
    return STOPPED if stopped(row) else FULL


def rank_key(row: Mapping[str, Any], metric: str) -> tuple:
    """Where a finished trial with a value for `metric` ranks: smaller is better (rules 2, 3)."""
    return tier(row), sign(metric) * row[metric], str(row["trial_id"])


def rank(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The finished trials of `runs` (a `study.views.runs.study_runs` frame) that have `metric`, best
    first, with columns `stopped`, `tier`, `standing` and `rank` (1 = best) added."""
    if metric not in runs or not len(runs):
        return pd.DataFrame(columns=[*runs.columns, *ADDED])
    ranked = runs[runs["state"].isin(FINISHED) & runs[metric].notna()]
    if not len(ranked):
        return ranked.assign(**{column: [] for column in ADDED})
    rows = ranked.to_dict("records")
    order = sorted(range(len(rows)), key=lambda i: rank_key(rows[i], metric))
    rows = [rows[i] for i in order]
    ranked = ranked.iloc[order].copy()
    ranked["stopped"] = [stopped(row) for row in rows]
    ranked["tier"] = [tier(row) for row in rows]
    ranked["standing"] = [standing(row) for row in rows]
    ranked["rank"] = range(1, len(ranked) + 1)
    return ranked.reset_index(drop=True)


def best_per_model(ranked: pd.DataFrame) -> pd.DataFrame:
    """The first trial of each model type in a `rank` frame (model types in ranked order)."""
    return ranked.drop_duplicates("model", keep="first").reset_index(drop=True)


def uncrowned(ranked: pd.DataFrame) -> dict[str, str]:
    """Model types with finished trials of which none may be crowned, each with the reason."""
    crowned = set(ranked.loc[ranked["tier"] != DEGENERATE, "model"])
    return {
        m: "every finished trial is degenerate (no better than the mean digit): none crowned"
        for m in sorted(set(ranked["model"]) - crowned)
    }


def winners(ranked: pd.DataFrame, per_model: bool) -> pd.DataFrame:
    """What may be crowned: the best non-degenerate trial overall, or of each model type."""
    crownable = ranked[ranked["tier"] != DEGENERATE]
    return best_per_model(crownable) if per_model else crownable.head(1).reset_index(drop=True)
