"""What the user sees while a sweep runs: one line per trial event, ranked as every view ranks."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune import Callback

from study.hints import study_command
from study.sweep import pictures, stopping
from study.sweep.leaders import Leaderboard, in_end_order
from study.sweep.space import Space
from study.sweep.trainable import FAILED
from study.tracking import StudyRecord, finish_trial, runs_page, trial_run_id
from study.trial.config import flat_config
from study.trial.metrics import OWN_SECONDS, degenerate
from study.trial.ranking import below_pca, standing
from study.trial.states import FINISHED, TrialState


def trial_state(status: str, last_result: dict[str, Any], config: dict[str, Any]) -> str:
    """done | stopped early | failed | running | pending, from Tune's status and the last report."""
    if status == "TERMINATED" and last_result.get(FAILED):
        return (
            TrialState.FAILED
        )  # a deterministic failure, ended without retries (study.sweep.trainable)
    if status == "TERMINATED":
        epochs = flat_config(config).get("epochs", 0)
        stopped = last_result.get("training_iteration", 0) < epochs
        return TrialState.STOPPED if stopped else TrialState.DONE
    return {
        "ERROR": TrialState.FAILED,
        "RUNNING": TrialState.RUNNING,
        "PAUSED": TrialState.PAUSED,
    }.get(status, TrialState.PENDING)


def print_where_to_watch(record: StudyRecord, space: Space) -> None:
    """Where the trials show up while the sweep runs."""
    page = runs_page(record.uri, record.experiment_id, space.objective, space.mode == "min")
    serve = "" if record.uri.startswith("http") else f"  (serve it: {study_command('ui')})"
    print(f"trials in the MLflow UI: {page}{serve}", flush=True)


def trial_row(trial: Any, objective: str, state: str | None = None) -> dict[str, Any]:
    """One Tune trial in the columns `study.trial.ranking` reads. `state`: the state of a trial
    whose end is being reported (Tune updates its status only after the callbacks)."""
    last, config = trial.last_result or {}, flat_config(trial.config)
    return {
        "trial_id": trial.trial_id,
        "model": config.get("model", "ae"),
        "state": state or trial_state(trial.status, last, trial.config),
        "epoch": last.get("training_iteration", 0),
        "epochs": config.get("epochs"),
        "ended_at": last.get("timestamp"),
        **{
            k: last.get(k, float("nan"))
            for k in {objective, "val_mse", "mean_digit_mse", "pca_mse"}
        },
    }


ENDED_STATUSES = ("TERMINATED", "ERROR")


def seed_leaders(board: Leaderboard, trials: list) -> None:
    """Count the trials a resumed sweep restored as ended (once: Tune reports no end for
    them), oldest end first."""
    if board.seeded:
        return
    board.seeded = True
    ended = [trial_row(t, board.objective) for t in trials if t.status in ENDED_STATUSES]
    for row in in_end_order(ended):
        board.add(row)


class ProgressPrinter(Callback):
    """Prints a line whenever a trial ends, and a heartbeat line at most every `every` seconds.
    A line costs O(trials) only in counting Tune's statuses; the best trial is kept up as trials
    end (`study.sweep.leaders`)."""

    def __init__(self, space: Space, board: Leaderboard, every: float = 30.0) -> None:
        self.space = space
        self.board = board
        self.every = every
        self.start = time.monotonic()
        self.last_beat = 0.0

    def __setstate__(self, state: dict) -> None:
        # a study launched before the leaderboard existed
        self.__dict__.update(state)
        if "board" not in state:
            self.board = Leaderboard(self.space.objective)

    def setup(self, **info) -> None:
        """Tune calls this when a run starts, a resumed one too: its clock counts from here
        (the printer itself is restored from the study's saved state)."""
        self.start = time.monotonic()
        self.last_beat = 0.0

    def _line(self, trials: list, event: str) -> None:
        seed_leaders(self.board, trials)
        ended = self.board.states
        counts = Counter(ended.get(t.trial_id) or t.status for t in trials)
        counts[TrialState.RUNNING] = counts.pop("RUNNING", 0)
        shown = ", ".join(
            f"{counts.get(s, 0)} {s}" for s in (TrialState.RUNNING, *FINISHED, TrialState.FAILED)
        )
        top = self.board.best
        best_text = "no finished trial yet"
        if top is not None:
            note = f", {standing(top)}" if standing(top) else ""
            best_text = f"best {self.space.objective} {top[self.space.objective]:.4f} ({top['trial_id']} {top['model']}{note})"
        print(
            f"[{time.monotonic() - self.start:6.0f}s] {shown} | {best_text} | {event}", flush=True
        )

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if time.monotonic() - self.last_beat >= self.every:
            self.last_beat = time.monotonic()
            epoch = result.get("epoch", result.get("training_iteration"))
            if epoch is not None:  # a failed trial's last report carries no epoch
                self._line(trials, f"{trial.trial_id} epoch {int(epoch)}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        state = trial_state("TERMINATED", trial.last_result or {}, trial.config)
        seed_leaders(self.board, trials)
        self.board.add(trial_row(trial, self.board.objective, state))
        self._line(trials, f"{trial.trial_id} {state}")

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self.board.restarted(trial.trial_id)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._line(trials, f"{trial.trial_id} raised; retrying from its last checkpoint")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        seed_leaders(self.board, trials)
        self.board.add(trial_row(trial, self.board.objective, TrialState.FAILED))
        self._line(trials, f"{trial.trial_id} failed (see `{study_command('status')}`)")


class TrackingCallback(Callback):
    """What the driver records when a trial ends: it closes the trial's MLflow run with its final
    state, which only the driver knows (ASHA's stop ends the trial function from outside, and a
    failed trial cannot report its own end), and, for a trial that leads its model type as it
    ends (`study.sweep.leaders`), draws its pictures and scores its test split from its last
    checkpoint (study.sweep.pictures) once no close is waiting.

    This runs on a thread of its own: during a tracking-server outage MLflow retries for
    minutes, which on Tune's loop would stall every trial, and an exception raised into the loop
    would turn a finished trial into a failed one. Pending closes are retried until the server
    answers; the sweep waits for them at its end for at most `drain_seconds`."""

    def __init__(
        self, record: StudyRecord, board: Leaderboard, drain_seconds: float = 120.0
    ) -> None:
        self.record = record
        self.board = board
        self.drain_seconds = drain_seconds
        self._queue: queue.Queue | None = None

    def __getstate__(self) -> dict:  # saved in Tune's state: the thread and queue are not
        return {**self.__dict__, "_queue": None}

    def __setstate__(self, state: dict) -> None:
        # a study launched before the leaderboard existed: it draws every finished trial
        self.__dict__.update({"board": None, **state})

    def _submit(self, trials: list, trial: Any, state: str, reason: str | None = None) -> None:
        finished = state in FINISHED
        drawn = finished
        if self.board is not None:
            seed_leaders(self.board, trials)
            drawn = self.board.add(trial_row(trial, self.board.objective, state))
        last = trial.last_result or {}
        if self._queue is None:
            # Closes go first: a run's end time is when its trial ended, not when the pictures
            # of the trials before it were done.
            self._queue = queue.PriorityQueue()
            _QUEUES.append(self._queue)
            threading.Thread(target=self._work, daemon=True, name="mlflow-closer").start()
        uri, experiment_id = self.record.uri, self.record.experiment_id
        self._queue.put(
            (
                0,
                next(ORDER),
                f"close trial {trial.trial_id}'s MLflow run",
                CLOSE_WAITS,
                finish_trial,
                (
                    uri,
                    experiment_id,
                    trial.trial_id,
                    state,
                    reason,
                    finished and bool(degenerate(last)),
                    finished and below_pca(last),
                ),
            )
        )
        if getattr(trial.checkpoint, "path", None) and drawn:
            self._queue.put(
                (
                    1,
                    next(ORDER),
                    f"log trial {trial.trial_id}'s pictures",
                    PICTURE_WAITS,
                    self._pictures,
                    (trial.trial_id, trial.checkpoint),
                )
            )

    def _work(self) -> None:
        while True:
            _, _, what, waits, call, args = self._queue.get()
            retried(what, call, *args, waits=waits)
            self._queue.task_done()

    def _pictures(self, trial_id: str, checkpoint) -> None:
        run_id = trial_run_id(self.record.uri, self.record.experiment_id, trial_id)
        if run_id:
            pictures.log_final(self.record.uri, run_id, checkpoint)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        state = trial_state("TERMINATED", trial.last_result or {}, trial.config)
        self._submit(trials, trial, state)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._submit(trials, trial, TrialState.FAILED, error_reason(trial))

    def on_experiment_end(self, trials, **info) -> None:
        """Wait (bounded) for the closes and pictures still queued, so the summary reads final
        states; unless a second stop signal came while Tune saved its state, which ends the
        sweep here (`study.sweep.stopping`)."""
        stopping.raise_if_pressed_again()
        if self._queue is None:
            return
        deadline = time.monotonic() + self.drain_seconds
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._queue.unfinished_tasks:
            print(
                f"warning: {self._queue.unfinished_tasks} MLflow update(s) of ended trials still "
                f"pending ({self.record.uri} unreachable?): a run not closed shows as running "
                "there, and one without pictures gets them at the study's next `resume`",
                flush=True,
            )


_QUEUES: list[queue.Queue] = []  # every closing thread's queue in this process


def closing_busy() -> bool:
    """Whether a closing thread is at work: a close, pictures or a test score under way."""
    return any(q.unfinished_tasks for q in _QUEUES)


ORDER = itertools.count()  # ties in the closing thread's queue go first come, first served
# Seconds between tries: a close outlasts a tracking server's restart; a picture that failed
# twice (an unreadable checkpoint, say) is not worth holding the sweep's end for.
CLOSE_WAITS, PICTURE_WAITS = (1, 2, 5, 10, 30, 60, 60, 60, 60, 60), (1, 5)


def retried(what: str, call, *args, waits: tuple[float, ...] = CLOSE_WAITS) -> bool:
    """call(*args) until it succeeds, sleeping `waits` between tries; warns and returns False
    after the last."""
    for wait in waits:
        try:
            call(*args)
            return True
        except Exception as exc:
            error = exc
            time.sleep(wait)
    print(f"warning: could not {what}: {error}", flush=True)
    return False


def error_reason(trial: Any) -> str | None:
    """The last failure Tune recorded for a trial (its error.txt), in one line: what the driver
    knows when the worker could not say (killed, or its restore failed)."""
    path = getattr(trial, "error_file", None)
    if not path or not Path(path).is_file():
        return None
    last = Path(path).read_text().rsplit("Failure # ", 1)[-1].splitlines()[1:]
    lines = [line.strip() for line in last if line.strip()]
    return f"{lines[0]} (see {path})"[:1000] if lines else None


def own_seconds(results: tune.ResultGrid, since: float = 0.0) -> float:
    """The trials' own training + evaluation time, summed over the epochs they reported from
    `since` (a Unix time) on: a resumed study's results hold its earlier runs' epochs too."""
    total = 0.0
    for r in results:
        history = r.metrics_dataframe
        if history is None or not len(history):
            continue
        if "timestamp" in history:
            history = history[history["timestamp"] >= int(since)]
        for col in OWN_SECONDS:
            if col in history:
                total += float(history[col].fillna(0).sum())
    return total
