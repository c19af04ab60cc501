"""What a killed driver leaves of its local Ray, found and stopped by the study's next driver.

A driver that ends in any ordinary way shuts its local Ray down. One that is SIGKILLed cannot:
Ray's head processes go with it, but the raylet's agents (`ray::DashboardAgent`,
`ray::RuntimeEnvAgent`) live on for a minute or more. Each local driver notes its Ray session
beside the study's lock; the next `sweep`/`resume` of the study (which holds the lock, so that
driver is gone) stops what still runs from that session, and `status` names it.

A process belongs to a session when it has a file of the session's folder open: Ray's agents
rename themselves (`ray::…`), so their command lines no longer say which session they serve.
Of those, only Ray's own are stopped (a `ray::` name, or a program of Ray's installed package):
whoever else reads the session's logs (`tail -f`) is not the study's. The note names the study
folder it was written for, under the MAC: a genuine note of another study copied in names
nothing. Linux only (/proc); elsewhere nothing is found.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path


def session_note(folder: Path) -> Path:
    """Beside the study's lock file (see study.sweep.lock), outside the study folder."""
    return folder.parent / f".{folder.name}.ray"


def remember(folder: Path, session_dir: str) -> None:
    """Note this driver's local Ray session for whoever drives the study next, signed with the
    study key; written to a fresh file and renamed into place, so a link planted as the note
    is replaced, never written through."""
    from study.sweep import plain_files, trust

    note = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "session_dir": session_dir,
        "study": str(folder),
    }
    body = json.dumps(note, sort_keys=True)
    plain_files.write_whole(
        session_note(folder), json.dumps({"note": body, "mac": trust.mac_of(body.encode())})
    )


def _read_note(folder: Path) -> dict | None:
    """The note, if this user's key signed it for this study folder and it names one of Ray's
    own session folders of this user; None otherwise: a planted note names no process to stop.
    A signing key that cannot be read is an error (TrustError naming it), not "no note"."""
    from study.sweep import plain_files, trust

    try:
        signed = json.loads(plain_files.read_bytes(session_note(folder)))
        body, mac = str(signed["note"]), str(signed["mac"])
    except (ValueError, KeyError, TypeError, plain_files.TrustError):
        return None  # no note, or not one the tool wrote
    if not trust.verify(body.encode(), mac):
        return None
    note = json.loads(body)
    session = Path(str(note.get("session_dir", "")))
    if note.get("study") != str(folder):
        return None  # another study's note, copied in
    if not (
        session.name.startswith("session_")
        and session.is_dir()
        and not session.is_symlink()
        and session.stat().st_uid == os.getuid()
    ):
        return None
    return note


def find(folder: Path) -> tuple[int, list[tuple[int, str]]]:
    """The noted driver's pid and the (pid, name) of its session's processes still running;
    nothing while that driver lives, when it ran on another machine, or when the note is not
    one this tool signed."""
    note = _read_note(folder)
    if note is None:
        return 0, []
    try:
        driver, session = int(note["pid"]), str(note["session_dir"])
    except (KeyError, TypeError, ValueError):
        return 0, []
    if note.get("host") != socket.gethostname() or running(driver) or not session:
        return driver, []
    found = [(pid, _name(pid)) for pid in _processes_with_open_files_in(session) if _is_rays(pid)]
    return driver, [(pid, name) for pid, name in found if running(pid)]  # none that just ended


def stop(folder: Path, grace: float = 5.0) -> None:
    """Stop what the study's killed driver left of its Ray (SIGTERM, then SIGKILL after
    `grace` seconds) and say so; the study's lock must be held."""
    driver, found = find(folder)
    if not found:
        return
    for pid, _ in found:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(running(pid) for pid, _ in found) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid, _ in found:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    print(f"stopped {describe(found)} left running by this study's killed driver (pid {driver})")


def describe(found: list[tuple[int, str]]) -> str:
    """'2 Ray processes (pid 9003 ray::DashboardAgent, …)'."""
    listed = ", ".join(f"pid {pid} {name}" for pid, name in found)
    return f"{len(found)} Ray process{'es' if len(found) > 1 else ''} ({listed})"


def running(pid: int) -> bool:
    """Running and not a zombie (a killed child its parent has not reaped yet is gone for us)."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except ProcessLookupError:
        return False
    except (OSError, IndexError):
        return True  # someone else's process, or no /proc: assume it runs
    return state != "Z"


def _name(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"
    return cmdline.strip()[:60] or "?"


@functools.cache
def _ray_package() -> str:
    """Where Ray is installed (found without importing it), with a trailing slash."""
    spec = importlib.util.find_spec("ray")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return os.path.join(locations[0], "") if locations else "\0"  # "\0": no path starts so


def _is_rays(pid: int) -> bool:
    """Whether the process is one of Ray's own: renamed `ray::…` (workers, agents), or running a
    program of Ray's package (raylet, GCS, log monitor), as its program or the script Python
    runs."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return argv[0].startswith("ray::") or any(a.startswith(_ray_package()) for a in argv[:3])


def _processes_with_open_files_in(session: str) -> list[int]:
    """This user's processes (not this one) holding a file under `session` open."""
    prefix = session.rstrip("/") + "/"
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            if any(f.startswith(prefix) for f in _open_files(entry)) and running(pid):
                found.append(pid)
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return sorted(found)


def _open_files(process: Path) -> Iterator[str]:
    for fd in (process / "fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            yield os.readlink(fd)
