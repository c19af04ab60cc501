"""Screenshots of a study in the MLflow UI, taken with headless Chromium: what docs/ shows.

    python -m analysis.screenshots NAME [--out docs]

Serves the study's store with `python -m study ui` on a free port of 127.0.0.1 (a tracking
server is used as it is), then saves three pages: the runs table the sweep prints
(`mlflow-runs.png`), the reconstructions of the study's winner (`mlflow-reconstruction.png`)
and, once `study export` has registered it, the winner's registry version
(`mlflow-model-version.png`). `make screenshots` runs a quickstart, exports it and calls this,
so the pictures in docs/ come from the code as it is. Chromium: `make browser`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from models import ResourceError, StudyError
from study import tracking
from study.trial.ranking import winners
from study.views.status import StudyView

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
    "--virtual-time-budget=20000",
]
UI_START_S = 300  # a busy 2-core machine takes over a minute to start the MLflow UI


def chromium(url: str, profile: Path, *args: str) -> str:
    """Load `url` in headless Chromium with `args` (--dump-dom, --screenshot=FILE); its stdout."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        raise ResourceError("Chromium is missing: run `make browser` (apt-get install chromium)")
    out = subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.stdout


def pages(uri: str, name: str, port: int) -> dict[str, str]:
    """File name -> the UI page it shows, for the study `name` in the store at `uri`."""
    view = StudyView(uri, name)
    experiment = tracking.experiment_id(uri, name)
    shown = {"mlflow-runs.png": view.page(port)}
    best = winners(view.ranked, per_model=False)
    if len(best):
        run_id = best.iloc[0]["run_id"]
        page = tracking.artifact_page(uri, experiment, run_id, "reconstructions.png", port)
        shown["mlflow-reconstruction.png"] = page
    version = tracking.alias_version(uri, name, "champion")
    if version:
        shown["mlflow-model-version.png"] = tracking.version_page(uri, name, version, port)
    return shown


@contextlib.contextmanager
def served(uri: str) -> Iterator[int]:
    """The port the store's MLflow UI answers on, for the block: `study ui` on a free port for a
    SQLite store (stopped after), the server's own for a tracking server."""
    if uri.startswith("http"):
        yield int(uri.rsplit(":", 1)[1].split("/")[0])
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "study", "ui", "--port", str(port), "--tracking-uri", uri]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    answering = threading.Event()
    threading.Thread(target=_watch, args=(proc, answering), daemon=True).start()
    try:
        if not answering.wait(UI_START_S):
            raise ResourceError(f"`study ui` did not answer on port {port} in {UI_START_S} s")
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def _watch(proc: subprocess.Popen, answering: threading.Event) -> None:
    """Set `answering` at `study ui`'s address line (printed once its port answers); read on to
    its end, so a full pipe never blocks the UI."""
    for line in proc.stdout:
        if line.startswith("MLflow UI at "):
            answering.set()


def take(uri: str, name: str, out: Path) -> list[Path]:
    """Save the study's pages (`pages`) as PNGs in `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with served(uri) as port, tempfile.TemporaryDirectory() as profile:
        for file, page in pages(uri, name, port).items():
            chromium(page, Path(profile), f"--screenshot={out / file}")
            written.append(out / file)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.screenshots",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", help="the study")
    parser.add_argument("--out", default="docs", help="folder for the PNGs (default: docs)")
    parser.add_argument(
        "--tracking-uri",
        help=f"default: {tracking.STORE_DEFAULT}",
    )
    args = parser.parse_args(argv)
    try:
        uri = tracking.resolve_tracking_uri(args.tracking_uri)
        tracking.check_reachable(uri, must_exist=True)
        files = take(uri, args.name, Path(args.out))
    except StudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
