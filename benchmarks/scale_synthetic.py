"""The driver's per-event costs at N trials, on a synthetic study, with the tool's own code:

- one save: Tune's dump of N trials' state (its own `json.dump` of strings the size of a real
  trial's: 3.9 + 19.5 KB, as measured on the state of `make bench-scale N=2000`), the tool's signing of the staging
  folder (`trust.sign`, at `Signer.get_state`), both on Tune's loop; and the copy of the staging
  folder into the study folder (`verified_storage`, on Tune's background thread) once the ended
  trials' logs are in place;
- one prune (`CheckpointPruner.on_step_end` after a save that named one new checkpoint);
- one progress line (`ProgressPrinter._line`) with N ended trials.

    .venv/bin/python benchmarks/scale_synthetic.py [--trials 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# One trial's share of Tune's experiment_state file and its logs, measured (benchmarks/scale.py's
# study of 2,000 trials)
TRIAL_JSON, METADATA_JSON = 3863, 19498
LOG_FILES = {
    "result.json": 1174,
    "progress.csv": 902,
    "params.json": 135,
    "params.pkl": 114,
    "events.out.tfevents": 2103,
}
RUNNING = 2  # trials running while the study holds N


def text_of(size: int, seed: int) -> str:
    draw = random.Random(seed)
    return "".join(draw.choice('abcdef0123456789"{}:, ') for _ in range(size))


def make_staging(staging: Path, ids: list[str]) -> None:
    staging.mkdir(parents=True)
    for trial_id in ids:
        trial_dir = staging / f"ae_{trial_id}"
        trial_dir.mkdir()
        for name, size in LOG_FILES.items():
            (trial_dir / name).write_bytes(b"x" * size)


def tune_dump(staging: Path, ids: list[str]) -> float:
    """Tune's own save of its state (TuneController.save_to_dir's json.dump)."""
    from ray.tune.utils.serialization import TuneFunctionEncoder

    trial, metadata = text_of(TRIAL_JSON, 0), text_of(METADATA_JSON, 1)
    state = {"trial_data": [[trial, metadata] for _ in ids], "runner_data": {}, "stats": {}}
    start = time.perf_counter()
    with open(staging / "experiment_state-synthetic.json", "w") as f:
        json.dump(state, f, cls=TuneFunctionEncoder)
    return time.perf_counter() - start


def copy_staging(staging: Path, folder: Path) -> float:
    from study.sweep import verified_storage

    fs = verified_storage.filesystem(folder, folder.name, verify=False)
    start = time.perf_counter()
    pyarrow.fs.copy_files(str(staging), str(folder), destination_filesystem=fs)
    return time.perf_counter() - start


def save_costs(tmp: Path, ids: list[str]) -> dict[str, float]:
    from study.sweep import saving, trust

    staging, folder = tmp / "staging", tmp / "study"
    make_staging(staging, ids)
    folder.mkdir()
    record = saving.of(folder)
    record.staging = staging
    dumped = tune_dump(staging, ids)
    start = time.perf_counter()
    trust.sign(staging)
    signed = time.perf_counter() - start
    first = copy_staging(staging, folder)  # every trial's logs: new
    record.ended = {f"ae_{t}" for t in ids[RUNNING:]}
    copy_staging(staging, folder)  # the ended trials' logs are whole there: taken out
    steady = copy_staging(staging, folder)  # what each later save copies
    n = len(ids)
    return {
        f"save at {n:,}: Tune's dump of its state s (on the loop)": dumped,
        f"save at {n:,}: signing s (on the loop)": signed,
        f"save at {n:,}: copy into the study folder, first s (background)": first,
        f"save at {n:,}: copy, ended trials in place s (background)": steady,
    }


def prune_cost(tmp: Path, ids: list[str]) -> float:
    from study.sweep import saving
    from study.sweep.pruning import CheckpointPruner

    folder = tmp / "pruned"
    for trial_id in ids:
        for i in range(2):
            (folder / f"ae_{trial_id}" / f"checkpoint_{i:06d}").mkdir(parents=True)
    changed = folder / f"ae_{ids[0]}"
    for i in range(2, 5):
        (changed / f"checkpoint_{i:06d}").mkdir()
    trial = SimpleNamespace(
        trial_id=ids[0], checkpoint=SimpleNamespace(path=str(changed / "checkpoint_000004"))
    )
    pruner = CheckpointPruner(folder)
    pruner.on_checkpoint(0, [], trial, None)
    pruner.get_state()
    saving.of(folder).state_in_place_since = time.monotonic()
    start = time.perf_counter()
    pruner.on_step_end(0, [])
    took = time.perf_counter() - start
    assert len(list(changed.iterdir())) == 2, "the pruner pruned nothing"
    return took


def line_cost(ids: list[str]) -> float:
    from study.sweep.leaders import Leaderboard
    from study.sweep.progress import ProgressPrinter, trial_row

    draw = random.Random(0)
    trials = [
        SimpleNamespace(
            trial_id=trial_id,
            status="TERMINATED" if i >= RUNNING else "RUNNING",
            config={"model": "ae", "epochs": 1, "latent_dim": 8},
            last_result={"training_iteration": 1, "val_mse": draw.uniform(0.01, 0.05)},
        )
        for i, trial_id in enumerate(ids)
    ]
    board = Leaderboard("val_mse")
    printer = ProgressPrinter(SimpleNamespace(objective="val_mse"), board)
    with contextlib.redirect_stdout(io.StringIO()):
        printer._line(trials, "warm-up")  # counts the restored trials once, as a resume does
        start = time.perf_counter()
        ended = trials[RUNNING - 1]
        board.add(trial_row(ended, "val_mse", "done"))
        printer._line(trials, f"{ended.trial_id} done")
    return time.perf_counter() - start


def measure(trials: int) -> dict[str, float]:
    """The three costs at `trials` trials."""
    ids = [f"{i:08x}" for i in range(trials)]
    with tempfile.TemporaryDirectory(prefix="aestudy-bench-synthetic-") as tmp:
        os.environ["AESTUDY_HOME"] = tmp  # the signing key of a home of its own
        figures = save_costs(Path(tmp), ids)
        figures[f"one prune at {trials:,} s"] = prune_cost(Path(tmp), ids)
    figures[f"one progress line at {trials:,} s"] = line_cost(ids)
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10000)
    for key, value in measure(parser.parse_args().trials).items():
        print(f"{key:<62} {value:10.4f}")
