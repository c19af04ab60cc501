"""A study's trials as one tidy pandas DataFrame, read from MLflow: what every view ranks.

The sweep's summary, `status`, `best`, `list`, `export` and the analysis tables all start from
`study_runs`, so they see the same trials in the same states with the same numbers.
"""

from __future__ import annotations

import ast

import pandas as pd

from study import tracking
from study.trial.metrics import METRICS
from study.trial.states import COUNTED, TrialState, read

# Params that identify the settings of a trial besides its seed (repeats share all of them).
NOT_SETTINGS = ("seed", "device", "data_dir", "dataset")
BASE_COLUMNS = ["run_id", "trial_id", "model", "state", "error", "given", "threads"]
# MLflow's run status, for runs the driver never closed with a state tag (a killed worker or
# driver): FINISHED without a tag cannot tell done from stopped, so it reads as unknown.
UNTAGGED = {
    "RUNNING": TrialState.RUNNING,
    "SCHEDULED": TrialState.RUNNING,
    "FAILED": TrialState.FAILED,
    "KILLED": TrialState.FAILED,
}


def study_runs(uri: str, study: str) -> pd.DataFrame:
    """One row per trial: run_id, trial_id, model, state, error, the params (as typed values) and
    the final value of each metric. Ordered by trial id, so every reader sees the same order."""
    raw = tracking.trial_runs(uri, study)
    if not len(raw):
        return pd.DataFrame(columns=BASE_COLUMNS)
    tagged = _column(raw, f"tags.{tracking.STATE}").map(read, na_action="ignore")
    untagged = raw["status"].map(UNTAGGED).fillna("unknown")
    out = pd.DataFrame(
        {
            "run_id": raw["run_id"],
            "trial_id": raw[f"tags.{tracking.TRIAL_ID}"],
            "model": raw["tags.aestudy.model"],
            "state": tagged.where(tagged.notna(), untagged),
            "error": _column(raw, f"tags.{tracking.ERROR}"),
            "given": _column(raw, f"tags.{tracking.GIVEN}").map(
                lambda keys: keys.split(",") if isinstance(keys, str) else None
            ),
            "threads": pd.to_numeric(_column(raw, f"tags.{tracking.THREADS}"), errors="coerce"),
        }
    )
    params = sorted(c for c in raw.columns if c.startswith("params."))
    for column in params:
        out[column.removeprefix("params.")] = raw[column].map(typed)
    for metric in METRICS:
        tag = tracking.AS_TAGS.get(metric)
        column = f"tags.{tag}" if tag else f"metrics.{metric}"
        out[metric] = raw[column].astype(float) if column in raw else float("nan")
    return out.sort_values("trial_id", kind="stable").reset_index(drop=True)


def state_counts(runs: pd.DataFrame) -> dict[str, int]:
    """How many trials are in each state, every state named (zeros included)."""
    states = runs["state"].value_counts() if len(runs) else {}
    return {str(s): int(states.get(s, 0)) for s in COUNTED}


def _column(raw: pd.DataFrame, name: str) -> pd.Series:
    return raw[name] if name in raw else pd.Series(None, index=raw.index, dtype=object)


def setting_columns(runs: pd.DataFrame) -> list[str]:
    """The param columns that define a trial's settings (everything but seed and data location)."""
    metric_like = {*BASE_COLUMNS, *METRICS}
    return [c for c in runs.columns if c not in metric_like and c not in NOT_SETTINGS]


def varying_settings(runs: pd.DataFrame) -> list[str]:
    """The setting columns whose value differs between `runs`: what the study actually searched."""
    return [c for c in setting_columns(runs) if runs[c].astype(str).nunique() > 1]


def typed(value: object) -> object:
    """MLflow stores params as strings: give numbers, lists and None back their type."""
    if not isinstance(value, str):
        return value
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            continue
    if value == "None":
        return None
    if value[:1] in "([":
        try:
            return list(ast.literal_eval(value))
        except (ValueError, SyntaxError):
            return value
    return value
