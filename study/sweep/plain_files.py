"""A study folder's files as plain files: read without following a link planted in their
place, written whole (aside, then renamed) or not at all. The trust boundary
(`study.sweep.trust`) reads and writes through these, and so do Tune's copies of its state
(`study.sweep.verified_storage`)."""

from __future__ import annotations

import contextlib
import io
import os
import stat
from collections.abc import Callable
from pathlib import Path

from models import StudyError


class TrustError(StudyError):
    """The study folder or the signing key cannot be trusted; the message names the file."""


def read_bytes(path: Path) -> bytes:
    """A file's bytes, refusing a link (O_NOFOLLOW) or anything but a plain file."""
    fd, _ = open_plain(path, str(path), "the tool writes only plain files into a study folder")
    with os.fdopen(fd, "rb") as f:
        return f.read()


def open_plain(path: Path, what: str, fix: str) -> tuple[int, os.stat_result]:
    """A descriptor of `path`, opened without following a link, and its status; TrustError
    naming `what` and the `fix` unless it is a plain file."""
    try:
        # O_NONBLOCK: a FIFO planted in the file's place would block the open until someone
        # writes to it (a hang, not an error); opened without waiting, it is refused below
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise TrustError(f"{what} cannot be read ({exc.strerror}): {fix}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise TrustError(f"{what} is not a plain file: {fix}")
    return fd, info


class ReplacedOnClose(io.RawIOBase):
    """A new file beside `path` (made exclusively: never a link planted there), renamed over
    `path` once closed after a complete write; after a failed write it is removed and `path`
    stays as it was."""

    def __init__(self, path: Path, on_replaced: Callable[[], None] | None = None) -> None:
        self.path = path
        self.on_replaced = on_replaced  # called once the new file is in place
        self.aside = path.with_name(f".{path.name}.{os.getpid()}.{id(self)}.tmp")
        self.file = open(self.aside, "xb")  # noqa: SIM115 (closed by close())
        self.failed = False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except BaseException:
            self.failed = True
            raise

    def __exit__(self, kind, *rest) -> None:
        self.failed = self.failed or kind is not None  # an error in the `with`: not whole
        self.close()

    def close(self) -> None:
        """Flush the new file to disk and rename it over `path`; if anything failed (a write,
        or the flush itself, as on a full disk, where the error often comes only now), remove
        it and raise: `path` keeps its old content either way."""
        if self.closed:
            return
        try:
            if not self.failed:
                self.file.flush()
                os.fsync(self.file.fileno())  # on disk before the rename makes it the file
        except BaseException:
            self.failed = True
            raise
        finally:
            with contextlib.suppress(OSError):  # after a failed flush: its buffer is dropped
                self.file.close()
            if self.failed:
                self.aside.unlink(missing_ok=True)
            else:
                self.aside.replace(self.path)
                if self.on_replaced is not None:
                    self.on_replaced()
            super().close()  # closed for good: the finaliser's close does nothing


def check_no_linked_folder(root: Path, path: Path) -> None:
    """Refuse (TrustError) a symbolic link planted as one of the folders between `root` and
    `path`: a file written there would land wherever the link points."""
    for folder in path.parents:
        if folder == root or not folder.is_relative_to(root):
            return
        if folder.is_symlink():
            raise TrustError(
                f"{folder} is a symbolic link; the tool writes none into a study folder, and "
                "files written there would land elsewhere: remove it"
            )


def write_whole(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all, never through a link planted there
    (`ReplacedOnClose`)."""
    with ReplacedOnClose(path) as f:
        f.write(text.encode())
