"""Run `python -m study ARGS…` in this process and, as it exits, write what the driver itself
spent to the JSON file named by $AESTUDY_METER: CPU seconds, bytes written (/proc/self/io
wchar), peak and final resident memory. The Ray processes it starts are other processes: only
the driver's own cost is counted.

    AESTUDY_METER=out.json python benchmarks/driver_meter.py sweep space.yaml --name s
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import runpy
import sys
from pathlib import Path


def proc_io() -> dict[str, int]:
    """This process's /proc/self/io counters (Linux)."""
    fields = (line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return {key: int(value) for key, value in fields}


def rss_mib(pid: int | str = "self") -> float:
    """A process's resident memory now, in MiB (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def dump(path: str) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures = {
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "wchar": proc_io()["wchar"],
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "end_rss_mib": rss_mib(),
    }
    Path(path).write_text(json.dumps(figures))


if __name__ == "__main__":
    atexit.register(dump, os.environ["AESTUDY_METER"])
    sys.argv = ["study", *sys.argv[1:]]
    runpy.run_module("study", run_name="__main__", alter_sys=True)
