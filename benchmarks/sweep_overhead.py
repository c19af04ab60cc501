"""Where a sweep's time goes: evaluation's share of each model type's trial time, how busy the
lanes are, and each trial's time outside training and evaluation.

    .venv/bin/python benchmarks/sweep_overhead.py [--rounds 2] [--epochs 6] [--lanes 2]
        [--gpus-per-trial 0.125] [--space search_spaces/quick.yaml]

By default, a fixed sweep (grid: ae, dae, cae, vae at latent 16, batch 64, no early stopping,
`--lanes` trials at a time) run through the real command line in two variants per round (VARIANTS): the
costly metrics measured every epoch (objective `probe_acc`) or only where a trial may end
(objective `val_bce`: the last epoch here). The order alternates between rounds, and the figures
printed are medians over rounds, with their range: on a shared machine one run alone says little.
`--space` measures a space file of one's own instead (one variant), and `--gpus-per-trial`
packs the lanes on a GPU (benchmarks/gpu_check.sh runs it so on a GPU machine).

Per sweep, from what MLflow and Tune recorded:
- eval share: Σ eval_seconds ÷ Σ (epoch_seconds + eval_seconds + pretrain_seconds), per model
  type, over its trials;
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
from collections import defaultdict
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


def space_files(home: Path, args: argparse.Namespace) -> dict[str, Path]:
    """Each variant's space file: the grid in both variants, or the one `--space` names."""
    if args.space is not None:
        return {args.space.name: args.space.resolve()}
    files = {}
    for i, (variant, objective) in enumerate(VARIANTS.items()):
        files[variant] = home / f"grid-{i}.yaml"
        files[variant].write_text(yaml.safe_dump(space(args.epochs, objective), sort_keys=False))
    return files


def run_sweep(home: Path, name: str, space_file: Path, lanes: int, gpus_per_trial: float) -> float:
    env = {**os.environ, "AESTUDY_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [
        sys.executable,
        "-m",
        "study",
        "sweep",
        str(space_file),
        "--name",
        name,
        "--max-concurrent",
        str(lanes),
    ]
    if gpus_per_trial:
        command += ["--gpus-per-trial", str(gpus_per_trial)]
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def measure(home: Path, name: str, lanes: int, wall: float) -> dict[str, float]:
    from study.tracking import client, trial_runs
    from study.trial.metrics import OWN_SECONDS

    uri = f"sqlite:///{home / 'mlflow.db'}"
    runs = trial_runs(uri, name)
    c = client(uri)
    figures: dict[str, float] = {"command wall s": wall}
    own_total, durations = 0.0, []
    evals: dict[str, float] = defaultdict(float)  # per model type, over its trials
    owns: dict[str, float] = defaultdict(float)
    parts = {
        "mlflow_seconds": 0.0,
        "weights_seconds": 0.0,
        "checkpoint_seconds": 0.0,
        "report_seconds": 0.0,
    }
    for _, run in runs.iterrows():
        sums = {
            key: sum(m.value for m in c.get_metric_history(run["run_id"], key))
            for key in OWN_SECONDS
        }
        own = sum(sums.values())
        own_total += own
        evals[run["params.model"]] += sums["eval_seconds"]
        owns[run["params.model"]] += own
        duration = (run["end_time"] - run["start_time"]) / 1000  # MLflow keeps milliseconds
        durations.append(duration)
        trial_dir = next((home / "studies" / name).glob(f"*_{run['tags.aestudy.trial_id']}"))
        progress = pd.read_csv(trial_dir / "progress.csv")
        for key in parts:
            parts[key] += float(progress[key].sum())
    for model in sorted(owns):
        figures[f"eval share {model}"] = evals[model] / owns[model]
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6, help="the grid's epochs")
    parser.add_argument("--lanes", type=int, default=2)
    parser.add_argument(
        "--gpus-per-trial",
        type=float,
        default=0.0,
        help="e.g. 0.125 with --lanes 8: eight trials packed on one GPU",
    )
    parser.add_argument("--space", type=Path, help="measure this space file instead of the grid")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="sweep-overhead-") as tmp:
        home = Path(tmp)
        files = space_files(home, args)
        variants = list(files)
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for i, variant in enumerate(order):
                name = f"r{r}-v{i}"
                wall = run_sweep(home, name, files[variant], args.lanes, args.gpus_per_trial)
                results[variant].append(measure(home, name, args.lanes, wall))
                print(f"round {r + 1}: {variant}: {wall:.0f} s", flush=True)
    # a searched space may draw other model types in other rounds: every figure any round had
    rows = list(dict.fromkeys(row for v in variants for f in results[v] for row in f))
    grid = "" if args.space else f"{args.epochs} epochs, "
    print(
        f"\nmedians (and ranges) over {args.rounds} round(s); {grid}{args.lanes} lanes, "
        f"{args.gpus_per_trial:g} GPU per trial, {os.cpu_count()} CPUs\n"
    )
    print(f"| measure | {' | '.join(variants)} |")
    print(f"|---|{'---|' * len(variants)}")
    for row in rows:
        shown = [
            spread([f[row] for f in results[v] if row in f], "share" in row or "busy" in row)
            for v in variants
        ]
        print(f"| {row} | {' | '.join(shown)} |")


def spread(values: list[float], percent: bool) -> str:
    """The median, and the range over rounds when there are several: the AE's short trial
    (~0.5 s) moved its evaluation share by 6 points between two 3-round runs of one code."""

    def fmt(v: float) -> str:
        return f"{v:.0%}" if percent else f"{v:.2f}"

    if not values:
        return "–"
    text = fmt(statistics.median(values))
    return text if len(values) < 2 else f"{text} ({fmt(min(values))}–{fmt(max(values))})"


if __name__ == "__main__":
    main()
