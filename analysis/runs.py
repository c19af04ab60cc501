"""A study's trials as one tidy pandas DataFrame, read from MLflow."""

from __future__ import annotations

import pandas as pd

from study import tracking

METRICS = ("val_mse", "val_bce", "denoise_mse", "probe_acc", "finetune_acc", "kl", "elbo",
           "test_mse", "test_bce", "test_denoise_mse", "test_probe_acc",
           "params", "epoch", "train_seconds")  # fmt: skip
# Params that identify the settings of a trial besides its seed (repeats share all of them).
NOT_SETTINGS = ("seed", "device", "data_dir", "dataset")


def study_runs(uri: str, study: str) -> pd.DataFrame:
    """One row per trial: run_id, trial_id, model, state, the params (as typed values) and the
    final value of each metric. Ordered by trial id, so every reader sees the same order."""
    raw = tracking.trial_runs(uri, study)
    if not len(raw):
        return pd.DataFrame(columns=["run_id", "trial_id", "model", "state"])
    out = pd.DataFrame({
        "run_id": raw["run_id"],
        "trial_id": raw[f"tags.{tracking.TRIAL_ID}"],
        "model": raw["tags.aestudy.model"],
        "state": raw.get(f"tags.{tracking.STATE}", pd.Series(index=raw.index, dtype=object)).fillna("running"),
    })  # fmt: skip
    params = sorted(c for c in raw.columns if c.startswith("params."))
    for column in params:
        out[column.removeprefix("params.")] = raw[column].map(_typed)
    for metric in METRICS:
        column = f"metrics.{metric}"
        out[metric] = raw[column].astype(float) if column in raw else float("nan")
    return out.sort_values("trial_id", kind="stable").reset_index(drop=True)


def setting_columns(runs: pd.DataFrame) -> list[str]:
    """The param columns that define a trial's settings (everything but seed and data location)."""
    metric_like = {"run_id", "trial_id", "model", "state", *METRICS}
    return [c for c in runs.columns if c not in metric_like and c not in NOT_SETTINGS]


def varying_settings(runs: pd.DataFrame) -> list[str]:
    """The setting columns whose value differs between `runs`: what the study actually searched."""
    return [c for c in setting_columns(runs) if runs[c].astype(str).nunique() > 1]


def _typed(value: object) -> object:
    """MLflow stores params as strings: give numbers back their type for sorting and plotting."""
    if not isinstance(value, str):
        return value
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            continue
    return value
