"""One driver per study: a sweep or resume holds an exclusive lock on `<storage>/.<name>.lock`
from before it writes anything until it returns (a study in object storage: PostgreSQL's
advisory lock in the study's search database, below).

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
from study import databases
from study.hints import resume_command
from study.sweep import bucket


def lock_path(storage: str | Path, name: str) -> Path:
    """Beside the study folder rather than in it, so taking it writes nothing into the study."""
    return Path(storage).expanduser().resolve() / f".{name}.lock"


def _in_use(path: Path, name: str, handle: TextIO) -> ResourceError:
    handle.seek(0)
    holder = handle.read().strip() or "another process"
    return ResourceError(
        f"study {name!r} is in use by {holder} (lock {path}): wait for that sweep or resume to "
        f"end, or stop it (Ctrl-C) and then `{resume_command(name, path.parent)}`"
    )


def check_not_held(storage: str | Path, name: str, database: str | None = None) -> None:
    """Exit 2 naming the holder if a driver holds the study's lock now; creates nothing (a check
    made before the checks that would otherwise report the study as merely existing)."""
    if bucket.is_remote(storage):
        holder = databases.holder(database, _remote_key(storage, name))
        if holder:
            raise _in_use_remote(storage, name, holder)
        return
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


def _remote_key(storage: str | Path, name: str) -> str:
    return bucket.Bucket.parse(str(storage)).study_root(name)


def _in_use_remote(storage: str | Path, name: str, holder: str) -> ResourceError:
    return ResourceError(
        f"study {name!r} is in use by {holder} (its lock in the search database): wait for that "
        f"sweep or resume to end, or stop it (Ctrl-C) and then `{resume_command(name, storage)}`"
    )


def _holder_note() -> str:
    command = "python -m study " + " ".join(sys.argv[1:])
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"pid {os.getpid()} on {socket.gethostname()} ({command!r}, since {started})"


@contextlib.contextmanager
def study_lock(
    storage: str | Path, name: str, keep: bool = True, database: str | None = None
) -> Iterator[None]:
    """Hold the study's lock for the duration of the block; exit 2 (ResourceError) naming the
    holder when another process has it. Without `keep`, a lock file this call made is removed
    when the block fails (a refused launch leaves nothing beside the study folder).

    A study in object storage has no folder whose `flock` every driver would see (and a
    bucket has no lock an S3-compatible store is sure to support), but it always has a
    PostgreSQL database (`--search-db`): its session-level advisory lock is the study's lock,
    released by the server when the holder's connection ends, as the kernel releases a
    `flock` when its holder dies."""
    if bucket.is_remote(storage):
        key = _remote_key(storage, name)
        bucket.Bucket.parse(str(storage)).mirror(name).parent.mkdir(parents=True, exist_ok=True)
        with databases.advisory_lock(database, key, _holder_note()[:63]) as held:
            if not held:
                raise _in_use_remote(
                    storage, name, databases.holder(database, key) or "another driver"
                )
            yield
        return
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
        handle.write(_holder_note())
        handle.flush()
        yield
    except BaseException:
        if made and not keep:
            path.unlink(missing_ok=True)  # still held: no other driver has it open
        raise
    finally:
        handle.close()  # releases the lock; the file stays, harmlessly
