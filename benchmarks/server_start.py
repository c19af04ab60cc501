"""What starting an MLflow server costs: `python -m study server` with MLflow's own defaults
(four workers, its job runner on) against the tool's `server` (four workers, no job runner) and
its `ui` (one worker, no job runner), side by side in one run.

    .venv/bin/python benchmarks/server_start.py [--rounds 2]

Each round starts each setting once, in turn, on a new SQLite store: seconds until /health
answers, and the CPU seconds of the whole process tree (the command, MLflow, uvicorn and its
workers, the job runner and its consumers) once it has settled 3 s later. Prints medians over
rounds. The machine should be otherwise quiet.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SETTINGS = {  # name: (workers, MLflow's job runner)
    "MLflow's defaults": (4, "true"),
    "study server": (4, "false"),
    "study ui": (1, "false"),
}
TICKS = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of `root` and every live process under it, with their reaped children."""
    stats = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            stats[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
    tree, frontier = {root}, [root]
    while frontier:
        frontier = [pid for pid, (parent, _) in stats.items() if parent in frontier]
        tree.update(frontier)
    return sum(stats[pid][1] for pid in tree if pid in stats) / TICKS


def start_once(workers: int, jobs: str, folder: Path) -> tuple[float, float]:
    """Start one server; returns (seconds until healthy, CPU seconds of its tree)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "study",
        "server",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--backend-store-uri",
        f"sqlite:///{folder / 's.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": jobs}
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"the server ended ({proc.returncode})") from None
                time.sleep(0.1)
        healthy = time.monotonic() - start
        time.sleep(3)
        return healthy, tree_cpu_seconds(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)  # `study server` stops its whole group
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    seen: dict[str, list[tuple[float, float]]] = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, (workers, jobs) in SETTINGS.items():
            with tempfile.TemporaryDirectory() as tmp:
                seen[name].append(start_once(workers, jobs, Path(tmp)))
    print(f"{'setting':<20} {'workers':>7} {'jobs':>5} {'healthy after':>14} {'CPU seconds':>12}")
    for name, (workers, jobs) in SETTINGS.items():
        healthy = statistics.median(h for h, _ in seen[name])
        cpu = statistics.median(c for _, c in seen[name])
        print(f"{name:<20} {workers:>7} {jobs:>5} {healthy:>13.1f}s {cpu:>12.1f}")
    print(f"medians of {args.rounds} round(s)")


if __name__ == "__main__":
    main()
