"""One driver per study: a sweep or resume holds an exclusive lock on `<storage>/.<name>.lock`
from before it writes anything until it returns.

Two drivers of one study would write two experiment states into one folder and twice as many
trials into its Optuna and MLflow records. The lock is `flock`-based, so the kernel releases it
when its holder dies however it dies (SIGKILL included): a stale lock file never blocks anyone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from models import ConfigError, ResourceError
from study.hints import resume_command


def lock_path(storage: str | Path, name: str) -> Path:
    """Beside the study folder rather than in it, so taking it writes nothing into the study."""
    return Path(storage).expanduser().resolve() / f".{name}.lock"


def _in_use(path: Path, name: str, handle: TextIO) -> ResourceError:
    handle.seek(0)
    holder = handle.read().strip() or "another process"
    return ResourceError(
        f"study {name!r} is in use by {holder} (lock {path}): wait for that sweep or resume to "
        f"end, or stop it (Ctrl-C) and then `{resume_command(name, path.parent / name)}`"
    )


def check_not_held(storage: str | Path, name: str) -> None:
    """Exit 2 naming the holder if a driver holds the study's lock now; creates nothing (a check
    made before the checks that would otherwise report the study as merely existing)."""
    path = lock_path(storage, name)
    if not os.path.lexists(path):
        return
    with _open_lock(path, create=False) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(path, name, handle) from None


def _open_lock(path: Path, create: bool = True) -> TextIO:
    """The lock file, opened without following a link: a link planted in its place would
    have the holder's note written into the file it points at."""
    flags = os.O_RDWR | os.O_NOFOLLOW | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise ConfigError(
            f"lock {path} cannot be opened ({exc.strerror}); it must be a plain file the tool "
            "made: remove it (a link or anything else there is not the tool's)"
        ) from None
    return os.fdopen(fd, "r+")


@contextlib.contextmanager
def study_lock(storage: str | Path, name: str, keep: bool = True) -> Iterator[None]:
    """Hold the study's lock for the duration of the block; exit 2 (ResourceError) naming the
    holder when another process has it. Without `keep`, a lock file this call made is removed
    when the block fails (a refused launch leaves nothing beside the study folder)."""
    path = lock_path(storage, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    made = not os.path.lexists(path)
    handle = _open_lock(path)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(path, name, handle) from None
        handle.seek(0)
        handle.truncate()
        command = "python -m study " + " ".join(sys.argv[1:])
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} ({command!r}, since {started})")
        handle.flush()
        yield
    except BaseException:
        if made and not keep:
            path.unlink(missing_ok=True)  # still held: no other driver has it open
        raise
    finally:
        handle.close()  # releases the lock; the file stays, harmlessly
