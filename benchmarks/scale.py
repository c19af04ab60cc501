"""What the orchestrator itself costs as a study grows: N cheap trials (1-epoch AEs of one linear
layer, random search, no scheduler) through the real command line, measured from outside.

    .venv/bin/python benchmarks/scale.py [--trials 1000] [--synthetic 10000] [--skip-sweep]

Printed, in one table:
- the driver's CPU seconds and bytes written (/proc/PID/io wchar) per trial, and those bytes ÷
  the size of Tune's final state (benchmarks/driver_meter.py counts them as the driver exits);
- the driver's resident memory when 10% and 100% of the trials had ended;
- seconds from the last trial's end (the progress line that counts it) to the driver's exit;
- trials per minute in the first and the last quarter of the trials;
- the wall time of `status`, `best`, `list` and of `resume` of the finished study.

Beside it (`--synthetic N`): one state save, one prune and one progress line at N trials,
timed with the tool's own functions on a synthetic study (benchmarks/scale_synthetic.py), so the
10,000-trial figures take minutes, not an afternoon.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from driver_meter import rss_mib  # noqa: E402

ENDED = re.compile(r"(\d+) done, (\d+) stopped early, (\d+) failed")


def space(trials: int) -> dict:
    """The issue's cheap trial: a 784 -> k -> 784 AE for one epoch, k in 8..16."""
    return {
        "description": f"bench-scale: {trials} one-epoch AE trials",
        "objective": "val_mse",
        "search": {"algorithm": "random", "seed": 0},
        "num_samples": trials,
        "epochs": 1,
        "scheduler": {"type": "none"},
        "fixed": {"batch_size": 64, "ae": {"hidden": []}},
        "params": {"model": ["ae"], "latent_dim": {"int": [8, 16]}},
    }


def run_sweep(home: Path, name: str, trials: int) -> dict[str, float]:
    """Run the sweep under the meter, reading its progress lines as they come."""
    space_file = home / "scale.yaml"
    space_file.write_text(yaml.safe_dump(space(trials), sort_keys=False))
    meter = home / "meter.json"
    env = {**os.environ, "AESTUDY_HOME": str(home), "AESTUDY_METER": str(meter)}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, str(ROOT / "benchmarks/driver_meter.py"), "sweep"]
    command += [str(space_file), "--name", name]
    start = time.monotonic()
    driver = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    crossed: dict[int, float] = {}  # ended trials -> when the line saying so came
    memory: dict[str, float] = {}
    tail: list[str] = []
    for line in driver.stdout:
        tail = [*tail[-30:], line]
        found = ENDED.search(line)
        if not found:
            continue
        ended = sum(int(n) for n in found.groups())
        now = time.monotonic() - start
        for count in range(len(crossed) and max(crossed) + 1, ended + 1):
            crossed.setdefault(count, now)
        if ended >= trials / 10 and "at 10%" not in memory:
            memory["at 10%"] = rss_mib(driver.pid)
        if ended >= trials and "at 100%" not in memory:
            memory["at 100%"] = rss_mib(driver.pid)
    if driver.wait() != 0:
        sys.exit(f"the sweep failed:\n{''.join(tail)}")
    end = time.monotonic() - start
    spent = json.loads(meter.read_text())
    state = max((home / "studies" / name).glob("experiment_state-*.json"))
    quarter = trials // 4
    return {
        "trials": trials,
        "sweep wall s": end,
        "driver CPU s per trial": spent["cpu_s"] / trials,
        "driver MB written per trial": spent["wchar"] / trials / 1e6,
        "driver bytes written ÷ final state": spent["wchar"] / state.stat().st_size,
        "final state MB": state.stat().st_size / 1e6,
        "driver MiB at 10% of trials": memory.get("at 10%", float("nan")),
        "driver MiB at 100% of trials": memory.get("at 100%", float("nan")),
        "driver MiB growth per 100 trials": (memory["at 100%"] - memory["at 10%"])
        / (0.9 * trials / 100),
        "s from last trial's end to exit": end - crossed[trials],
        "trials/min, first quarter": (quarter - 1) / (crossed[quarter] - crossed[1]) * 60,
        "trials/min, last quarter": quarter / (crossed[trials] - crossed[trials - quarter]) * 60,
    }


def time_views(home: Path, name: str) -> dict[str, float]:
    """Wall seconds of each view of the finished study, and of resuming it."""
    env = {**os.environ, "AESTUDY_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    figures = {}
    for view in (["status", name], ["best", name], ["list"], ["resume", name]):
        start = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "study", *view], cwd=ROOT, env=env, capture_output=True
        )
        figures[f"`{view[0]}` wall s"] = time.monotonic() - start
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--synthetic", type=int, default=10000, help="0: leave it out")
    parser.add_argument("--skip-sweep", action="store_true", help="only the synthetic figures")
    parser.add_argument("--home", type=Path, help="keep the study in this new AESTUDY_HOME")
    args = parser.parse_args()
    figures: dict[str, float] = {}
    if not args.skip_sweep:
        with tempfile.TemporaryDirectory(prefix="aestudy-bench-scale-") as tmp:
            home = args.home or Path(tmp)
            home.mkdir(parents=True, exist_ok=True)
            figures |= run_sweep(home, "scale", args.trials)
            figures |= time_views(home, "scale")
    if args.synthetic:
        from scale_synthetic import measure

        figures |= measure(args.synthetic)
    width = max(map(len, figures))
    for key, value in figures.items():
        print(
            f"{key:<{width}}  {value:>12,.3f}"
            if isinstance(value, float)
            else f"{key:<{width}}  {value:>12}"
        )


if __name__ == "__main__":
    main()
