"""What the user sees while a sweep runs: one line per trial event, ranked as every view ranks."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
from ray import tune
from ray.tune import Callback

from study.config import flat_config
from study.ranking import rank
from study.space import Space
from study.tracking import StudyRecord, finish_trial, runs_page


def trial_state(status: str, last_result: dict[str, Any], config: dict[str, Any]) -> str:
    """done | stopped early | failed | running | pending, from Tune's status and the last report."""
    if status == "TERMINATED":
        epochs = flat_config(config).get("epochs", 0)
        return "stopped early" if last_result.get("training_iteration", 0) < epochs else "done"
    return {"ERROR": "failed", "RUNNING": "running", "PAUSED": "paused"}.get(status, "pending")


def print_where_to_watch(record: StudyRecord, space: Space) -> None:
    """Where the trials show up while the sweep runs."""
    page = runs_page(record.uri, record.experiment_id, space.objective, space.mode == "min")
    serve = "" if record.uri.startswith("http") else "  (serve it: python -m study ui)"
    print(f"trials in the MLflow UI: {page}{serve}", flush=True)


def live_runs(trials: list, objective: str, ended: dict[str, str] | None = None) -> pd.DataFrame:
    """Tune's trials in the columns `study.ranking.rank` reads. `ended`: trial id -> state of a
    trial whose end is being reported (Tune updates its status only after the callbacks)."""
    rows = []
    for t in trials:
        last, config = t.last_result or {}, flat_config(t.config)
        state = (ended or {}).get(t.trial_id) or trial_state(t.status, last, t.config)
        rows.append({
            "trial_id": t.trial_id,
            "model": config.get("model", "ae"),
            "state": state,
            "epoch": last.get("training_iteration", 0),
            "epochs": config.get("epochs"),
            **{k: last.get(k, float("nan")) for k in {objective, "val_mse", "mean_digit_mse"}},
        })  # fmt: skip
    return pd.DataFrame(rows)


class ProgressPrinter(Callback):
    """Prints a line whenever a trial ends, and a heartbeat line at most every `every` seconds."""

    def __init__(self, space: Space, every: float = 30.0) -> None:
        self.space = space
        self.every = every
        self.start = time.monotonic()
        self.last_beat = 0.0

    def setup(self, **info) -> None:
        """Tune calls this when a run starts, a resumed one too: its clock counts from here
        (the printer itself is restored from the study's saved state)."""
        self.start = time.monotonic()
        self.last_beat = 0.0

    def _line(self, trials: list, event: str, ended: dict[str, str] | None = None) -> None:
        runs = live_runs(trials, self.space.objective, ended)
        counts = runs["state"].value_counts()
        shown = ", ".join(
            f"{counts.get(s, 0)} {s}" for s in ("running", "done", "stopped early", "failed")
        )
        ranked = rank(runs, self.space.objective)
        best_text = "no finished trial yet"
        if len(ranked):
            top = ranked.iloc[0]
            note = f", {top['standing']}" if top["standing"] else ""
            best_text = f"best {self.space.objective} {top[self.space.objective]:.4f} ({top['trial_id']} {top['model']}{note})"
        print(
            f"[{time.monotonic() - self.start:6.0f}s] {shown} | {best_text} | {event}", flush=True
        )

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if time.monotonic() - self.last_beat >= self.every:
            self.last_beat = time.monotonic()
            self._line(trials, f"{trial.trial_id} epoch {result.get('epoch')}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        state = trial_state("TERMINATED", trial.last_result or {}, trial.config)
        self._line(trials, f"{trial.trial_id} {state}", {trial.trial_id: state})

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._line(trials, f"{trial.trial_id} raised; retrying from its last checkpoint")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._line(
            trials,
            f"{trial.trial_id} failed (see `python -m study status`)",
            {trial.trial_id: "failed"},
        )


class TrackingCallback(Callback):
    """Closes each trial's MLflow run with its final state; only the driver knows it (ASHA's stop
    ends the trial function from outside, and a failed trial cannot report its own end)."""

    def __init__(self, record: StudyRecord) -> None:
        self.record = record

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        state = trial_state("TERMINATED", trial.last_result or {}, trial.config)
        finish_trial(self.record.uri, self.record.experiment_id, trial.trial_id, state)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        # The error itself was tagged on the run by the failing worker (study.trainable).
        finish_trial(self.record.uri, self.record.experiment_id, trial.trial_id, "failed")


def own_seconds(results: tune.ResultGrid) -> float:
    """The trials' own training + evaluation time, summed over every epoch they reported."""
    total = 0.0
    for r in results:
        history = r.metrics_dataframe
        if history is None or not len(history):
            continue
        for col in ("epoch_seconds", "eval_seconds", "pretrain_seconds"):
            if col in history:
                total += float(history[col].fillna(0).sum())
    return total
