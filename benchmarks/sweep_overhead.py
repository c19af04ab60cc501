"""Where a sweep's time goes: evaluation's share of each model type's trial time, how busy the
lanes are, and each trial's time outside training and evaluation.

    .venv/bin/python benchmarks/sweep_overhead.py [--rounds 2] [--epochs 6] [--lanes 2]

A fixed sweep (grid: ae, dae, cae, vae at latent 16, batch 64, no early stopping, `--lanes`
trials at a time) run through the real command line in two variants per round (VARIANTS): the
costly metrics measured every epoch (objective `probe_acc`) or only where a trial may end
(objective `val_bce`: the last epoch here). The order alternates between rounds, and the figures
printed are medians over rounds, with their range: on a shared machine one run alone says little.

Per sweep, from what MLflow and Tune recorded:
- eval share: Σ eval_seconds ÷ Σ (epoch_seconds + eval_seconds + pretrain_seconds), per model;
- lanes busy: Σ trials' own time ÷ (span × lanes), span = first run's start to last run's end;
- per trial, outside its own time: MLflow logging, the weights' upload, checkpoint writes
  and Tune's report (the checkpoint's copy and the round trip to the driver), measured in the
  trainable; the rest of its run (a worker's first imports, model set-up, the driver closing the
  run); and the time between runs (worker start, scheduling, and the lanes left idle at the end
  while the last trials finish).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["ae", "dae", "cae", "vae"]


def space(epochs: int, objective: str) -> dict:
    return {
        "description": f"sweep overhead benchmark ({objective})",
        "objective": objective,
        "search": {"algorithm": "grid"},
        "epochs": epochs,
        "scheduler": {"type": "none"},
        "fixed": {"batch_size": 64, "latent_dim": 16},
        "params": {"model": MODELS},
    }


# name: objective
VARIANTS = {
    "costly metrics every epoch": "probe_acc",
    "costly metrics where a trial may end": "val_bce",
}


def run_sweep(home: Path, name: str, epochs: int, variant: str, lanes: int) -> float:
    objective = VARIANTS[variant]
    path = home / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space(epochs, objective), sort_keys=False))
    env = {**os.environ, "AESTUDY_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "study", "sweep", str(path), "--name", name,
         "--max-concurrent", str(lanes)],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return time.perf_counter() - start


def measure(home: Path, name: str, lanes: int, wall: float) -> dict[str, float]:
    from study.metrics import OWN_SECONDS
    from study.tracking import client, trial_runs

    uri = f"sqlite:///{home / 'mlflow.db'}"
    runs = trial_runs(uri, name)
    c = client(uri)
    figures: dict[str, float] = {"command wall s": wall}
    own_total, durations = 0.0, []
    parts = {"mlflow_seconds": 0.0, "weights_seconds": 0.0, "checkpoint_seconds": 0.0,
             "report_seconds": 0.0}  # fmt: skip
    for _, run in runs.iterrows():
        sums = {
            key: sum(m.value for m in c.get_metric_history(run["run_id"], key))
            for key in OWN_SECONDS
        }
        own = sum(sums.values())
        own_total += own
        model = run["params.model"]
        figures[f"eval share {model}"] = sums["eval_seconds"] / own
        duration = (run["end_time"] - run["start_time"]) / 1000  # MLflow keeps milliseconds
        durations.append(duration)
        trial_dir = next((home / "studies" / name).glob(f"*_{run['tags.aestudy.trial_id']}"))
        progress = pd.read_csv(trial_dir / "progress.csv")
        for key in parts:
            parts[key] += float(progress[key].sum())
    span = (runs["end_time"].max() - runs["start_time"].min()) / 1000
    n = len(runs)
    figures["lanes busy"] = own_total / (span * lanes)
    figures["span s"] = span
    for key, total in parts.items():
        figures[f"per trial: {key.removesuffix('_seconds')} s"] = total / n
    in_runs = sum(durations) - own_total - sum(parts.values())
    figures["per trial: rest of its run s"] = in_runs / n
    figures["per trial: between runs s"] = (span * lanes - sum(durations)) / n
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lanes", type=int, default=2)
    args = parser.parse_args()
    variants = list(VARIANTS)
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as tmp:
        home = Path(tmp)
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for i, variant in enumerate(order):
                name = f"r{r}-v{i}"
                wall = run_sweep(home, name, args.epochs, variant, args.lanes)
                results[variant].append(measure(home, name, args.lanes, wall))
                print(f"round {r + 1}: {variant}: {wall:.0f} s", flush=True)
    rows = results[next(iter(variants))][0].keys()
    print(f"\nmedians (and ranges) over {args.rounds} round(s); {args.epochs} epochs, {args.lanes} lanes, "
          f"{os.cpu_count()} CPUs\n")  # fmt: skip
    print(f"| measure | {' | '.join(variants)} |")
    print(f"|---|{'---|' * len(variants)}")
    for row in rows:
        shown = [spread([f[row] for f in results[v]], "share" in row or "busy" in row)
                 for v in variants]  # fmt: skip
        print(f"| {row} | {' | '.join(shown)} |")


def spread(values: list[float], percent: bool) -> str:
    """The median, and the range over rounds when there are several: the AE's short trial
    (~0.5 s) moved its evaluation share by 6 points between two 3-round runs of one code."""

    def fmt(v: float) -> str:
        return f"{v:.0%}" if percent else f"{v:.2f}"

    text = fmt(statistics.median(values))
    return text if len(values) < 2 else f"{text} ({fmt(min(values))}–{fmt(max(values))})"


if __name__ == "__main__":
    main()
