"""What a study holds, in the terminal: `status NAME`, `best NAME`, `list`, and the sweep's
closing summary. All of them rank with `study.trial.ranking.rank` over `study.views.runs.study_runs`."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pandas as pd

from models import StudyError
from study import tracking
from study.hints import python, storage_option, study_command
from study.sweep import leftovers
from study.trial.config import TRAIN_OPTIONS
from study.trial.metrics import DEFAULT_OBJECTIVE, METRICS, goal, test_counterpart
from study.trial.ranking import (
    DEGENERATE,
    below_pca,
    best_per_model,
    rank,
    uncrowned,
    winners,
)
from study.trial.states import TrialState, shown
from study.views.runs import BASE_COLUMNS, state_counts, study_runs

# A runs frame's columns that are not the trial's parameters
NOT_PARAMS = {*BASE_COLUMNS, *METRICS}

STATE_ORDER = {
    TrialState.RUNNING: 0,
    TrialState.INTERRUPTED: 1,
    "unknown": 2,
    TrialState.FAILED: 3,
    TrialState.ORPHANED: 4,
}


class StudyView:
    """One study as every view sees it: its runs, objective, searched parameters and ranking."""

    def __init__(self, uri: str, name: str) -> None:
        tracking.check_reachable(uri, must_exist=True)
        self.uri, self.name = uri, name
        self.info = tracking.study_params(uri, name)
        self.objective = self.info.get("objective", DEFAULT_OBJECTIVE)
        self.runs = study_runs(uri, name)
        self.ranked = rank(self.runs, self.objective)
        searched = self.info.get("searched", "")
        self.searched = [p for p in searched.split(",") if p and p != "model"]

    def page(self, port: int = 5000) -> str:
        """The study's trials in the MLflow UI (`study ui` on `port`), sorted by the objective."""
        experiment = tracking.experiment_id(self.uri, self.name)
        ascending = goal(self.objective) == "min"
        return tracking.runs_page(self.uri, experiment, self.objective, ascending, port)

    def counts(self) -> dict[str, int]:
        return state_counts(self.runs)

    def unranked(self) -> pd.DataFrame:
        """Trials not in the ranking (running, failed, …): running first, by their current value."""
        rest = self.runs[~self.runs["run_id"].isin(self.ranked["run_id"])].copy()
        if not len(rest):
            return rest
        rest["_order"] = rest["state"].map(STATE_ORDER).fillna(len(STATE_ORDER))
        direction = 1 if goal(self.objective) == "min" else -1
        rest["_value"] = direction * rest[self.objective].fillna(math.inf * direction)
        return rest.sort_values(["_order", "_value", "trial_id"]).drop(columns=["_order", "_value"])

    def parameters(self, row: pd.Series) -> str:
        """The searched parameters this trial was given (not another model's, nor defaults)."""
        given = row.get("given")
        shown = [
            f"{p}={_fmt(row[p])}"
            for p in self.searched
            if p in row and _present(row[p]) and (given is None or p in given)
        ]
        return " ".join(shown)

    def error_file(self, trial_id: str) -> Path | None:
        """The full traceback Tune wrote for a failed trial, in the study folder."""
        folder = self.info.get("folder")
        found = sorted(Path(folder).glob(f"*_{trial_id}/error.txt")) if folder else []
        return found[0] if found else None


def print_status(uri: str, name: str, limit: int | None = None) -> None:
    """The trials, ranked by the objective: state, epochs, objective and searched parameters;
    the best `limit` of the ranked ones and of the failed ones (all: None), every running one."""
    view = StudyView(uri, name)
    counts = ", ".join(f"{n} {s}" for s, n in view.counts().items() if n)
    print(
        f"study {name}: {len(view.runs)} trials ({counts or 'none yet'}); "
        f"objective {view.objective} ({goal(view.objective)})"
    )
    print(
        f"{'rank':>4}  {'trial':<10} {'model':<5} {'state':<19} {'epoch':>5}  "
        f"{view.objective:>10}  parameters"
    )
    ranked = view.ranked.head(limit)
    for _, row in ranked.iterrows():
        state = shown(row["state"], row["tier"] == DEGENERATE, below_pca(row))
        _status_line(view, str(row["rank"]), row, state)
    unranked = view.unranked()
    failed = unranked["state"] == TrialState.FAILED
    hidden = _hidden(view.ranked, limit, "ranked") + _hidden(unranked[failed], limit, "failed")
    if limit is not None:
        unranked = pd.concat([unranked[~failed], unranked[failed].head(limit)])
    for _, row in unranked.iterrows():
        state = (
            f"running, epoch {_int(row['epoch'])}"
            if row["state"] == TrialState.RUNNING
            else row["state"]
        )
        _status_line(view, "-", row, state)
        if row["state"] == TrialState.FAILED:
            reason = (
                str(row["error"]).splitlines()[0]
                if _present(row["error"])
                else "no reason recorded"
            )
            print(f"{'':6}reason: {reason}")
            where = view.error_file(row["trial_id"])
            if where:  # a deterministic failure ends the trial without an error file
                print(f"{'':6}full error: {where}")
    if (ranked["tier"] == DEGENERATE).any():
        print(
            "degenerate: no better on held-out digits than predicting the mean digit "
            "(val_mse >= mean_digit_mse); ranked last and never exported"
        )
    if hidden:
        print(f"{' and '.join(hidden)} not shown: `{study_command(f'status {name} --all')}`")
    if any(below_pca(row) for row in ranked.to_dict("records")):
        print(
            "PCA better: no better than PCA with as many components as the trial's code "
            "(val_mse >= pca_mse); kept in its tier"
        )
    planned = _int(view.info.get("num_samples"), 0)
    if view.info.get("search") != "grid" and len(view.runs) < planned:
        print(f"{planned - len(view.runs)} of {planned} trials not started yet")
    if view.info.get("folder"):
        _name_leftovers(Path(str(view.info["folder"])), name)


def _hidden(rows: pd.DataFrame, limit: int | None, kind: str) -> list[str]:
    """'N more <kind> trials' when `limit` leaves some of `rows` out."""
    more = 0 if limit is None else len(rows) - limit
    return [f"{more} more {kind} trials"] if more > 0 else []


def _name_leftovers(folder: Path, name: str) -> None:
    driver, found = leftovers.find(folder)
    if found:
        print(
            f"{leftovers.describe(found)} left running by the killed driver (pid {driver}): "
            f"they end on their own within about 90 s; `{study_command(f'resume {name}')}` "
            "stops them"
        )


def _status_line(view: StudyView, rank_text: str, row: pd.Series, state: str) -> None:
    value = row[view.objective]
    shown = f"{value:.4f}" if _present(value) else "-"
    epochs = f"{_int(row['epoch'])}/{_int(row.get('epochs'))}"
    print(
        f"{rank_text:>4}  {row['trial_id']:<10} {row['model']:<5} {state:<19} {epochs:>5}  "
        f"{shown:>10}  {view.parameters(row)}"
    )


def print_best(uri: str, name: str, model: str | None = None) -> int:
    """The best trial of each model type (or of `model`), with the command that reproduces it."""
    view = StudyView(uri, name)
    picks = winners(view.ranked, per_model=True)
    if model is not None:
        picks = picks[picks["model"] == model]
    if not len(picks):
        which = f" of model {model!r}" if model else ""
        degenerate = " that is not degenerate" if len(view.ranked) else ""
        raise StudyError(
            f"study {name} has no finished trial{which}{degenerate} to crown (see "
            f"`{study_command(f'status {name}')}`)"
        )
    print(f"chosen by validation {view.objective}; test numbers reported, never chosen by")
    for _, row in picks.iterrows():
        standing = row["standing"] or f"ran all {_int(row['epoch'])} epochs"
        print(
            f"{row['model']:<5} {view.objective} {row[view.objective]:.4f}"
            f"{tested(row, view.objective)}  trial {row['trial_id']}  ({standing})  "
            f"run {row['run_id']}"
        )
        print(f"      {train_command(row)}")
    for m, reason in uncrowned(view.ranked).items():
        if model in (None, m):
            print(f"{m:<5} {reason}")
    return 0


def tested(row: pd.Series, metric: str) -> str:
    """`metric`'s test-split number beside it, labelled, or '' where there is none (yet)."""
    name = test_counterpart(metric)
    value = row.get(name) if name else None
    return f" ({name} {value:.4f})" if _present(value) else ""


def train_command(row: pd.Series) -> str:
    """`python -m study train …` that reruns the trial: the settings the sweep gave it (its run's
    `given` keys, so nothing is left to a default; without the tag, every parameter it logged),
    the epochs it actually trained (a stopped trial's fewer) and torch's threads in it (a CAE's
    numbers differ in the 4th digit between 1 and 2 threads)."""
    given = row.get("given")
    keys = given if isinstance(given, list) else [k for k in row.index if k not in NOT_PARAMS]
    config = {"model": row["model"], **{k: row[k] for k in keys if k in row and _present(row[k])}}
    config["epochs"] = _int(row["epoch"])
    args = [python(), "-m", "study", "train"]
    for key, value in config.items():
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        option = [f"--{key.replace('_', '-')}", text] if key in TRAIN_OPTIONS else None
        args += option or ["--set", f"{key}={text}"]
    if _present(row.get("threads")):
        args += ["--threads", str(_int(row["threads"]))]
    return shlex.join(args)


def print_list(uri: str) -> None:
    """The studies in the store: trials by state and the best score."""
    tracking.check_reachable(uri, must_exist=True)
    names = tracking.study_names(uri)
    if not names:
        print(f"no studies in {uri}")
        return
    print(f"{len(names)} stud{'y' if len(names) == 1 else 'ies'} in {uri}")
    print(f"{'study':<28} {'trials':>6}  {'states':<40} best")
    for name in names:
        view = StudyView(uri, name)
        counts = ", ".join(f"{n} {s}" for s, n in view.counts().items() if n) or "no trials"
        top = winners(view.ranked, per_model=False)
        best = (
            f"{view.objective} {top.iloc[0][view.objective]:.4f}"
            f"{tested(top.iloc[0], view.objective)} ({top.iloc[0]['model']}, "
            f"trial {top.iloc[0]['trial_id']})"
            if len(top)
            else "-"
        )
        print(f"{name:<28} {len(view.runs):>6}  {counts:<40} {best}")


def print_summary(
    uri: str, name: str, own_seconds: float, wall: float, folder: Path, storage: str = ""
) -> None:
    """The sweep's closing lines: trials by state, the best of each model type, and how the
    wall time compares with the trials' own seconds of this run (`own_seconds`)."""
    view = StudyView(uri, name)
    counts = view.counts()
    print(f"\n{len(view.runs)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    print(
        f"best validation {view.objective} per model type (ranked as `status` and `export` "
        "rank; the test split's number beside it, never ranked by):"
    )
    for _, row in best_per_model(view.ranked).iterrows():
        note = f"  [{row['standing']}]" if row["standing"] else ""
        print(
            f"  {row['model']:<5} {row[view.objective]:.4f}{tested(row, view.objective)}  "
            f"trial {row['trial_id']}  {view.parameters(row)}{note}"
        )
    if own_seconds:
        print(
            f"wall time {wall:.0f}s for {own_seconds:.0f}s of the trials' own training and "
            f"evaluation in this run: {own_seconds / wall:.2f} trial-seconds per second (above "
            "1: trials ran side by side; below: the rest went to start-up and overhead)"
        )
    else:
        print(
            f"wall time {wall:.0f}s; no trial reported a trained epoch in this run (each had "
            "ended already, or failed before its first epoch)"
        )
    where = storage if "://" in storage else folder  # a bucket's study: its URI, not the mirror
    option = storage_option(storage or folder.parent)
    status, best = study_command(f"status {name}{option}"), study_command(f"best {name}{option}")
    print(f"results: {where}  ({status}; {best})")
    print(f"trials in the MLflow UI: {view.page()}")


def _present(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _int(value: object, missing: int | str = "?") -> int | str:
    try:
        return int(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return missing


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
