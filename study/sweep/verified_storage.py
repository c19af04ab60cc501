"""The study folder as Tune sees it: on `resume`, every pickled file is verified as it is read.

`trust.check` verifies the folder before Ray starts, but Tune reads the files again seconds
later; whoever could swap a file in between would have their pickle loaded. Handing Tune this
filesystem closes that window: each read of a signed kind of file (`trust.pickled_files`)
reads the bytes once, checks them against the folder's signatures, and gives Tune those very
bytes, or raises `TrustError` naming the file.

Tune copies its saved state into the folder file by file, each truncated, then written; through
this filesystem every file it writes into the folder (its state, a trial's results and
checkpoints) is written aside and renamed into place, so a driver killed during a copy leaves
the old file or the new one, whole, never one cut short, and a link planted in a file's place
is replaced, never written through; a link planted as one of the folders on the way is refused.

An ended trial's logs are written until the folder holds them whole; the last time Tune copies
them, their staging copy is removed as it is read, so that later saves do not copy them again
(`study.sweep.saving`). When a copy of Tune's state is in place, the pruner hears of it.

A study in object storage (`study.sweep.bucket`) is the same filesystem over the bucket's:
Tune's paths are then the bucket's, reads of signed state are read from the bucket and verified
there, and on the driver each file is first written whole into the study's mirror, then put into
the bucket; trial workers (the handler unpickled) write the bucket only.

A failed trial's `error.pkl` is hidden: Tune unpickles it for its result grid at the end of
every `fit`, and the tool needs none of it (`error.txt` says the same in words), so no pickle
planted there can run. The launch hands Tune this filesystem too, its reads unverified (it
reads no saved state but that).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pyarrow
import pyarrow.fs

from study.sweep import bucket, plain_files, saving, trust

# Tune's pickle of a failed trial's exception, in the trial's folder.
ERROR_PICKLE = "error.pkl"


class VerifyingHandler(pyarrow.fs.FileSystemHandler):
    """A local filesystem whose reads of the study's pickled state are verified (unless
    `verify` is False: the launch, `resume --trust-state`), whose files in the folder are
    replaced whole, which never rewrites what the launch wrote (`trust.WRITTEN_BY_THE_LAUNCH`:
    Tune copies every .json and .pkl at the top of the folder into its staging folder when it
    restores, and copies them all back at every save) and which hides trials' `error.pkl`."""

    def __init__(
        self, folder: Path, name: str, verify: bool = True, storage: str = "", mirror: bool = True
    ) -> None:
        self.folder = Path(folder)
        self.name = name
        self.verify = verify
        # A study in object storage (`study.sweep.bucket`): Tune's paths are the bucket's
        # (`bucket/prefix/name/...`); on the driver (`mirror`) each file written into the study
        # is written whole into the mirror `folder` first, then put into the bucket. Trial
        # workers (this handler unpickled: no mirror) read and write the bucket only.
        self.storage = storage
        self.mirror = mirror
        self.root = bucket.Bucket.parse(storage).study_root(name) if storage else ""
        self._inner = None

    @property
    def inner(self) -> pyarrow.fs.FileSystem:
        if self._inner is None:
            remote = bucket.Bucket.parse(self.storage) if self.storage else None
            self._inner = remote.filesystem() if remote else pyarrow.fs.LocalFileSystem()
        return self._inner

    def __reduce__(self):  # Tune ships the storage filesystem to its trial workers
        return VerifyingHandler, (self.folder, self.name, self.verify, self.storage, False)

    def _key(self) -> tuple:
        return (self.folder, self.verify, self.storage, self.mirror)

    def __eq__(self, other) -> bool:
        return isinstance(other, VerifyingHandler) and other._key() == self._key()

    def __ne__(self, other) -> bool:
        return not self == other

    def local(self, path: str) -> Path:
        """Where `path` lies in the study folder (a bucket's path: its place in the mirror)."""
        if self.root and (path == self.root or path.startswith(self.root + "/")):
            return self.folder / path[len(self.root) :].lstrip("/")
        return Path(path)

    def _signed_kind(self, path: str) -> bool:
        return self.verify and trust.is_signed(self.folder, self.local(path))

    def _verified(self, path: str) -> pyarrow.BufferReader:
        if self.storage:
            with self.inner.open_input_stream(path) as f:
                data = f.read()
        else:
            data = plain_files.read_bytes(Path(path))
        relative = str(self.local(path).relative_to(self.folder))
        expected = trust.signatures(self.folder, self.name).get(relative, "")
        if not trust.verify(data, expected):
            raise trust.refusal(self.folder, self.name, [relative])
        return pyarrow.BufferReader(data)

    def _hidden(self, path: str) -> bool:
        p = self.local(path)
        return p.name == ERROR_PICKLE and p.parent.parent == self.folder

    def _read(self, path: str, local_open):
        if self._hidden(path):
            raise trust.TrustError(f"{path}: the tool never loads a trial's pickled error")
        return self._verified(path) if self._signed_kind(path) else local_open(path)

    def open_input_stream(self, path: str):
        return self._read(path, self.inner.open_input_stream)

    def open_input_file(self, path: str):
        return self._read(path, self.inner.open_input_file)

    def get_type_name(self) -> str:
        return "aestudy-verified-" + ("s3" if self.storage else "local")

    def normalize_path(self, path: str) -> str:
        return self.inner.normalize_path(path)

    def get_file_info(self, paths):
        infos = self.inner.get_file_info(paths)
        return [
            pyarrow.fs.FileInfo(info.path, pyarrow.fs.FileType.NotFound)
            if self._hidden(info.path)
            else info
            for info in infos
        ]

    def get_file_info_selector(self, selector):
        return self.inner.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.inner.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.inner.delete_dir(path)
        if self.storage and self.mirror:
            shutil.rmtree(self.local(path), ignore_errors=True)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.inner.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refusing to delete the root folder's contents")

    def delete_file(self, path: str) -> None:
        self.inner.delete_file(path)
        if self.storage and self.mirror:
            self.local(path).unlink(missing_ok=True)

    def move(self, src: str, dest: str) -> None:
        self.inner.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.inner.copy_file(src, dest)

    def open_output_stream(self, path: str, metadata):
        if self.storage and not self.mirror:  # a trial worker: the bucket only
            return self.inner.open_output_stream(path, metadata=metadata)
        p = self.local(path)
        if not p.is_relative_to(self.folder):
            return self.inner.open_output_stream(path, metadata=metadata)
        plain_files.check_no_linked_folder(self.folder, p)
        if p.parent == self.folder and p.name in trust.WRITTEN_BY_THE_LAUNCH and p.exists():
            return pyarrow.BufferOutputStream()  # written to memory, then dropped
        if self._ended_log_in_place(p):
            return pyarrow.BufferOutputStream()
        placed = None
        if p.parent == self.folder and p.match(trust.STATE_FILES):
            placed = _state_placed(self.folder, time.monotonic())
        if self.storage:  # the bucket holds the study: in place once put there
            placed = _put_then(self.inner, p, path, placed)
        p.parent.mkdir(parents=True, exist_ok=True)
        return pyarrow.PythonFile(plain_files.ReplacedOnClose(p, placed), mode="w")

    def _ended_log_in_place(self, p: Path) -> bool:
        """Whether `p` is a log of a trial that ended in this session that the folder already
        holds whole (the size of its staging copy, which only grows: Tune appends to its logs).
        Its staging copy is then removed: Tune's copy reads it through the handle it opened
        before asking for this stream, and no later save lists it."""
        record = saving.of(self.folder)
        if record.staging is None or p.parent.parent != self.folder:
            return False
        if p.parent.name not in record.ended:
            return False
        staged = record.staging / p.parent.name / p.name
        try:
            if staged.stat().st_size != p.stat().st_size:
                return False
        except FileNotFoundError:
            return False
        staged.unlink(missing_ok=True)
        return True

    def open_append_stream(self, path: str, metadata):
        if self.local(path).is_relative_to(self.folder):  # appending would write through a link
            raise trust.TrustError(f"{path}: files in a study folder are replaced whole")
        return self.inner.open_append_stream(path, metadata=metadata)


def _put_then(fs: pyarrow.fs.FileSystem, local: Path, path: str, then):
    """Once the mirror's file `local` is whole: put it into the bucket at `path` (one request:
    the object is the old one or the new one), then `then`."""

    def put() -> None:
        data = plain_files.read_bytes(local)
        with fs.open_output_stream(path) as f:
            f.write(data)
        if then is not None:
            then()

    return put


def _state_placed(folder: Path, began: float):
    """What to do once a copy of Tune's state, begun at `began`, is in place: tell the pruner
    that every save made before `began` is saved (`study.sweep.pruning`)."""

    def placed() -> None:
        record = saving.of(folder)
        record.state_in_place_since = max(record.state_in_place_since, began)

    return placed


def filesystem(
    folder: Path, name: str, verify: bool = True, storage: str = ""
) -> pyarrow.fs.PyFileSystem:
    """The storage filesystem the launch and `resume` hand Tune for the study in `folder` (the
    mirror of a study in the object storage `storage`); `verify` False (the launch,
    `resume --trust-state`) reads the state unverified."""
    return pyarrow.fs.PyFileSystem(VerifyingHandler(folder, name, verify, storage))
