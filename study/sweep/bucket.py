"""A study in object storage: `--storage s3://bucket/prefix` (pyarrow's S3 filesystem, which
Tune uses too; `?endpoint_override=host:port&scheme=http` for an S3-compatible store; credentials
the usual AWS way: environment, ~/.aws, an instance role).

The bucket holds the study: Tune's state and every checkpoint, the trials' logs, `study.json` and
the signatures. Trials write their checkpoints there from whichever node runs them, so the
cluster's nodes share no folder. The driver keeps a *mirror* of the study's top-level files in
`<home>/mirrors/<storage>/<name>`: every file the driver writes goes to the mirror (whole, as
in a local study folder) and then to the bucket; `resume`, holding the study's lock, first pulls
the bucket's top-level files into it. The trust boundary's checks and the pruner's bookkeeping
thus read a local folder, while the bytes Tune loads on `resume` are read from the bucket itself
and verified as they are read (`study.sweep.verified_storage`). The views read `study.json`
straight from the bucket and never touch the mirror, which a running sweep writes.

No Ray, no torch: the read-only views use this module.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from models import ConfigError, ResourceError
from study import tracking

# S3FileSystem's options that a storage URI may carry (pyarrow's own names).
URI_OPTIONS = ("endpoint_override", "scheme", "region", "force_virtual_addressing")
PROBE = ".aestudy-write-check"
# pyarrow's S3 client retries a refused connection for ~6 s; the checks want one try, at once.
CHECK_TIMEOUT_S = 5


def is_remote(storage: str | Path) -> bool:
    """Whether `--storage` names an object store rather than a folder."""
    return "://" in str(storage)


@dataclass(frozen=True)
class Bucket:
    """A parsed `s3://bucket/prefix?options` storage URI."""

    uri: str
    bucket: str
    prefix: str
    options: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, uri: str) -> Bucket:
        """ConfigError naming the problem for anything but `s3://bucket[/prefix][?options]`."""
        parts = urllib.parse.urlsplit(uri)
        if parts.scheme != "s3":
            raise ConfigError(
                f"--storage {uri}: object storage is s3://bucket/prefix (S3 or an S3-compatible "
                "store, with ?endpoint_override=host:port); otherwise give a folder"
            )
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", parts.netloc):
            raise ConfigError(f"--storage {uri}: {parts.netloc!r} is not an S3 bucket name")
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        unknown = sorted({key for key, _ in query} - set(URI_OPTIONS))
        if unknown:
            raise ConfigError(
                f"--storage {uri}: unknown option {', '.join(unknown)}; a storage URI takes "
                f"{', '.join(URI_OPTIONS)}"
            )
        return cls(uri, parts.netloc, parts.path.strip("/"), tuple(sorted(query)))

    @property
    def root(self) -> str:
        """The storage path inside the filesystem (what Tune's `storage_path` is)."""
        return f"{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def endpoint(self) -> str:
        values = dict(self.options)
        host = values.get("endpoint_override")
        if not host:
            return "AWS S3"
        return host if "://" in host else f"{values.get('scheme', 'https')}://{host}"

    def study_root(self, name: str) -> str:
        return f"{self.root}/{name}"

    def filesystem(self, quick: bool = False):
        """pyarrow's S3FileSystem for this storage; `quick`: one try, short timeouts (checks).

        Its writes are made in the calling thread (`background_writes=False`): Tune copies
        files through the study's filesystem on pyarrow's IO threads, and an S3 stream whose
        writes wait on that same pool, from inside it, deadlocked the driver's first save."""
        import pyarrow.fs

        kwargs: dict = dict(self.options, background_writes=False)
        if "force_virtual_addressing" in kwargs:
            kwargs["force_virtual_addressing"] = kwargs["force_virtual_addressing"] == "true"
        if quick:
            kwargs.update(
                connect_timeout=CHECK_TIMEOUT_S,
                request_timeout=CHECK_TIMEOUT_S,
                retry_strategy=pyarrow.fs.AwsStandardS3RetryStrategy(max_attempts=1),
            )
        return pyarrow.fs.S3FileSystem(**kwargs)

    def check(self) -> None:
        """Exit 2 (ConfigError/ResourceError) with one line naming the endpoint or the bucket
        when the bucket cannot be reached, does not exist or cannot be written; writes (and
        removes) one probe object under the prefix."""
        import pyarrow.fs

        fs = self.filesystem(quick=True)
        try:
            info = fs.get_file_info(self.bucket)
        except OSError as exc:
            silent = "NETWORK_CONNECTION" in str(exc) or "curlCode" in str(exc)
            what = "does not answer" if silent else "refuses the request"
            raise ResourceError(
                f"--storage {self.uri}: the object store at {self.endpoint} {what} "
                f"({_first_line(exc)}); check the endpoint and the AWS credentials "
                "(AWS_ACCESS_KEY_ID, ~/.aws)"
            ) from None
        if info.type == pyarrow.fs.FileType.NotFound:
            raise ConfigError(
                f"--storage {self.uri}: bucket {self.bucket!r} does not exist at {self.endpoint}; "
                "create it first (e.g. `aws s3 mb s3://" + self.bucket + "`)"
            )
        probe = f"{self.root}/{PROBE}-{os.getpid()}"
        try:
            with fs.open_output_stream(probe) as f:
                f.write(b"the tool checks that it may write here; safe to delete\n")
            fs.delete_file(probe)
        except OSError as exc:
            raise ResourceError(
                f"--storage {self.uri}: bucket {self.bucket!r} at {self.endpoint} cannot be "
                f"written ({_first_line(exc)}); give credentials that may write under "
                f"s3://{self.root}/"
            ) from None

    def mirror(self, name: str) -> Path:
        """The driver's local mirror of study `name`'s top-level files."""
        digest = hashlib.sha256(f"{self.root}|{self.endpoint}".encode()).hexdigest()[:12]
        return tracking.home() / "mirrors" / f"{self.bucket}-{digest}" / name

    def has(self, name: str, filename: str) -> bool:
        import pyarrow.fs

        info = self.filesystem().get_file_info(f"{self.study_root(name)}/{filename}")
        return info.type == pyarrow.fs.FileType.File

    def read(self, name: str, filename: str) -> bytes | None:
        """The bytes of the study's top-level file `filename` in the bucket; None if absent."""
        try:
            with self.filesystem().open_input_stream(f"{self.study_root(name)}/{filename}") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def pull(self, name: str, folder: Path) -> None:
        """Copy the study's top-level files from the bucket into the mirror `folder` (each
        replaced whole); files in the mirror that the bucket no longer holds are removed."""
        import pyarrow.fs

        from study.sweep import plain_files

        fs = self.filesystem()
        selector = pyarrow.fs.FileSelector(self.study_root(name), allow_not_found=True)
        files = [i for i in fs.get_file_info(selector) if i.type == pyarrow.fs.FileType.File]
        folder.mkdir(parents=True, exist_ok=True)
        for info in files:
            with (
                fs.open_input_stream(info.path) as f,
                plain_files.ReplacedOnClose(folder / info.base_name) as out,
            ):
                out.write(f.read())
        held = {info.base_name for info in files}
        for stale in folder.iterdir():
            if stale.is_file() and not stale.name.startswith(".") and stale.name not in held:
                stale.unlink()

    def push(self, name: str, path: Path) -> None:
        """Upload the mirror's file `path` to the study in the bucket (one PUT: whole or not)."""
        from study.sweep import plain_files

        data = plain_files.read_bytes(path)
        with self.filesystem().open_output_stream(f"{self.study_root(name)}/{path.name}") as f:
            f.write(data)

    def remove(self, name: str) -> None:
        """Delete the study from the bucket (a launch undone before its first trial)."""
        fs = self.filesystem()
        fs.delete_dir_contents(self.study_root(name), missing_dir_ok=True)


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
