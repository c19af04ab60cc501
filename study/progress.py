"""What the user sees while a sweep runs and when it ends: one line per trial event, then a summary."""

from __future__ import annotations

import json
import time
from typing import Any

from ray import tune
from ray.tune import Callback

from study.config import flat_config
from study.space import Space
from study.tracking import StudyRecord, finish_trial


def trial_state(status: str, last_result: dict[str, Any], config: dict[str, Any]) -> str:
    """done | stopped early | failed | running | pending, from Tune's status and the last report."""
    if status == "TERMINATED":
        epochs = flat_config(config).get("epochs", 0)
        return "stopped early" if last_result.get("training_iteration", 0) < epochs else "done"
    return {"ERROR": "failed", "RUNNING": "running", "PAUSED": "paused"}.get(status, "pending")


class ProgressPrinter(Callback):
    """Prints a line whenever a trial ends, and a heartbeat line at most every `every` seconds."""

    def __init__(self, space: Space, every: float = 30.0) -> None:
        self.space = space
        self.every = every
        self.start = time.monotonic()
        self.last_beat = 0.0

    def _line(self, trials: list, event: str) -> None:
        counts: dict[str, int] = {}
        best: tuple[float, str] | None = None
        metric, sign = self.space.objective, 1 if self.space.mode == "min" else -1
        for t in trials:
            state = trial_state(t.status, t.last_result or {}, t.config)
            counts[state] = counts.get(state, 0) + 1
            value = (t.last_result or {}).get(metric)
            if value is not None and (best is None or sign * value < sign * best[0]):
                best = (value, f"{t.trial_id} {flat_config(t.config).get('model', '?')}")
        shown = ", ".join(
            f"{counts.get(s, 0)} {s}" for s in ("running", "done", "stopped early", "failed")
        )
        best_text = f"best {metric} {best[0]:.4f} ({best[1]})" if best else "no result yet"
        print(
            f"[{time.monotonic() - self.start:6.0f}s] {shown} | {best_text} | {event}", flush=True
        )

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if time.monotonic() - self.last_beat >= self.every:
            self.last_beat = time.monotonic()
            self._line(trials, f"{trial.trial_id} epoch {result.get('epoch')}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        state = trial_state("TERMINATED", trial.last_result or {}, trial.config)
        self._line(trials, f"{trial.trial_id} {state}")

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._line(trials, f"{trial.trial_id} raised; retrying from its last checkpoint")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._line(trials, f"{trial.trial_id} failed (see `python -m study status`)")


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


def trial_rows(results: tune.ResultGrid, space: Space) -> list[dict[str, Any]]:
    """One row per trial: id, state, model, epochs run, objective, own training seconds."""
    rows = []
    for r in results:
        config = flat_config(r.config or {})
        history = r.metrics_dataframe
        own = 0.0
        if history is not None and len(history):
            for col in ("epoch_seconds", "eval_seconds", "pretrain_seconds"):
                if col in history:
                    own += float(history[col].fillna(0).sum())
        metrics = r.metrics or {}
        status = "ERROR" if r.error else "TERMINATED"
        rows.append({
            "trial_id": metrics.get("trial_id", "?"),
            "state": trial_state(status, metrics, config),
            "model": config.get("model", "ae"),
            "epochs": metrics.get("training_iteration", 0),
            space.objective: metrics.get(space.objective),
            "train_seconds": own,
            "config": config,
        })  # fmt: skip
    return rows


def best_per_model(rows: list[dict[str, Any]], space: Space) -> dict[str, dict[str, Any]]:
    """The best finished (or early-stopped) trial of each model type."""
    sign = 1 if space.mode == "min" else -1
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        value = row[space.objective]
        if row["state"] == "failed" or value is None:
            continue
        current = best.get(row["model"])
        if current is None or sign * value < sign * current[space.objective]:
            best[row["model"]] = row
    return dict(sorted(best.items()))


def print_summary(results: Any, space: Any, name: str, storage: str, wall: float) -> None:
    from study.sweep import study_dir

    rows = trial_rows(results, space)
    counts = {s: sum(r["state"] == s for r in rows) for s in ("done", "stopped early", "failed")}
    own = sum(r["train_seconds"] for r in rows)
    print(f"\n{len(rows)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    print(f"best {space.objective} per model type:")
    for model, row in best_per_model(rows, space).items():
        shown = {
            k: v for k, v in row["config"].items() if k not in ("dataset", "data_dir", "model")
        }
        print(
            f"  {model:<5} {row[space.objective]:.4f}  trial {row['trial_id']}  {json.dumps(shown, sort_keys=True)}"
        )
    ratio = wall / own if own else float("nan")
    print(f"wall time {wall:.0f}s; trials' own training+evaluation {own:.0f}s; ratio {ratio:.2f}")
    print(f"results: {study_dir(storage, name)}  (python -m study status {name})")
