"""A sweep on a team's services beside the embedded default, one after the other, same space:

- embedded: local Ray, the study folder and Optuna's SQLite file under $AESTUDY_HOME, MLflow in a
  SQLite file (the quickstart);
- team: the study in an S3 bucket (moto's server mode on 127.0.0.1), Optuna's study and the lock
  in PostgreSQL (Debian's server), MLflow behind `study server` with its store in PostgreSQL and
  its artifacts in the bucket (cluster.yaml's layout, on one machine).

    .venv/bin/python benchmarks/team_services.py [--space search_spaces/quick.yaml]

Prints each sweep's wall time (the command's, start to exit) and their ratio. The servers run on
this machine: what the figure leaves out is a network's latency to a real bucket and database.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.servers import free_port, start_server  # noqa: E402
from tests.harness.services import S3_ENV, postgres_server, s3_server  # noqa: E402


def sweep(space: str, name: str, home: Path, *extra: str, env: dict | None = None) -> float:
    """Seconds one `python -m study sweep` takes, start to exit; fails loudly if it fails."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "study", "sweep", space, "--name", name, *extra],
        cwd=ROOT,
        env={**os.environ, **(env or {}), "AESTUDY_HOME": str(home)},
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    print(result.stdout.strip().splitlines()[-5], flush=True)  # its "N trials: …" line
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default=str(ROOT / "search_spaces" / "quick.yaml"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="aestudy-bench-team-"))
    root.chmod(0o755)  # PostgreSQL's user enters it
    embedded = sweep(args.space, "embedded", root / "embedded")
    print(f"embedded default: {embedded:.1f} s", flush=True)
    with postgres_server(root / "pg") as pg, s3_server(root / "s3") as s3:
        bucket = s3.create("bench-team")
        env = {**S3_ENV, "MLFLOW_S3_ENDPOINT_URL": s3.endpoint}
        port = free_port()
        (root / "server").mkdir()
        server = start_server(
            root / "server", port, pg.create("mlflow"), f"s3://{bucket}/mlflow", env
        )
        try:
            team = sweep(
                args.space,
                "team",
                root / "team",
                "--storage",
                s3.uri(bucket),
                "--search-db",
                pg.create("optuna"),
                "--tracking-uri",
                f"http://127.0.0.1:{port}",
                env=env,
            )
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    print(f"PostgreSQL + S3 (+ MLflow server): {team:.1f} s", flush=True)
    print(f"ratio team / embedded: {team / embedded:.2f}x", flush=True)


if __name__ == "__main__":
    main()
