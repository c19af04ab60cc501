"""Where each part of a study lives, from its launch options: the study itself (a folder, or a
place in a bucket), the path and filesystem Tune is handed, and Optuna's storage."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from study.sweep import bucket, verified_storage
from study.sweep.folder import search_storage as search_in
from study.sweep.folder import study_dir

if TYPE_CHECKING:
    from study.sweep.launch import SweepOptions


def location(options: SweepOptions) -> str:
    """Where the study lives, as the tracking store records it: its folder, or its bucket URI."""
    if bucket.is_remote(options.storage):
        return f"s3://{bucket.Bucket.parse(options.storage).study_root(options.name)}"
    return str(study_dir(options.storage, options.name))


def tune_path(options: SweepOptions) -> str:
    """The study's path as Tune sees it: its folder, or `bucket/prefix/name` in the bucket."""
    if bucket.is_remote(options.storage):
        return bucket.Bucket.parse(options.storage).study_root(options.name)
    return str(study_dir(options.storage, options.name))


def study_filesystem(options: SweepOptions, verify: bool):
    """The storage filesystem Tune gets for the study (`study.sweep.verified_storage`)."""
    remote = options.storage if bucket.is_remote(options.storage) else ""
    folder = study_dir(options.storage, options.name)
    return verified_storage.filesystem(folder, options.name, verify=verify, storage=remote)


def search_storage(options: SweepOptions, folder: Path) -> str:
    """Where Optuna keeps the study's search (`folder.search_storage`)."""
    return search_in(folder, options.search_db)
