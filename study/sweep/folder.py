"""Where a study lives and what its launch saved there (`study.json`), read without Ray or
torch: the read-only views find a study's tracking store through it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from models import ConfigError
from study import tracking
from study.sweep import bucket, plain_files
from study.sweep.checks import check_name

STUDY_FILE = "study.json"
# The sampler's study in the study folder: Optuna's journal file, whose lock (a file created
# with O_EXCL, then renamed) works on NFS, where SQLite's fcntl locks do not; studies launched
# before it keep their SQLite file. A team's study keeps it in PostgreSQL (--search-db).
OPTUNA_JOURNAL = "optuna.journal"
OPTUNA_DB = "optuna.db"


def default_storage() -> Path:
    """Where studies live unless --storage says otherwise: <home>/studies (see tracking.home)."""
    return tracking.home() / "studies"


def study_dir(storage: str | Path, name: str) -> Path:
    """Where study `name` lives; absolute, because trials run in their own working folders. For
    a study in object storage: the driver's mirror of its top-level files (`study.sweep.bucket`)."""
    check_name(name)
    if bucket.is_remote(storage):
        return bucket.Bucket.parse(str(storage)).mirror(name)
    root = Path(storage).expanduser()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--storage {storage} is a file; give the folder that holds studies")
    return (root / name).resolve()


def pulled(storage: str | Path, name: str) -> Path:
    """`study_dir`, after pulling a study in object storage into its mirror: what the bucket
    holds now (another driver may have run it since). Only a driver holding the study's lock
    pulls: the mirror is its working copy."""
    folder = study_dir(storage, name)
    if bucket.is_remote(storage):
        bucket.Bucket.parse(str(storage)).pull(name, folder)
    return folder


def search_storage(folder: Path, search_db: str | None) -> str:
    """Where Optuna keeps the search of the study in `folder`: --search-db; else, in the folder,
    its SQLite file if the study was launched with one, else its journal file (a path)."""
    if search_db:
        return search_db
    if (folder / OPTUNA_DB).is_file():
        return f"sqlite:///{folder / OPTUNA_DB}"
    return str(folder / OPTUNA_JOURNAL)


def open_search(spec: str):
    """Optuna's storage for `spec` (`search_storage`: a database URL, or a journal file)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if "://" in spec:
        return optuna.storages.RDBStorage(spec)
    backend = JournalFileBackend(spec, lock_obj=JournalFileOpenLock(spec))
    return optuna.storages.JournalStorage(backend)


def has_search(spec: str) -> bool:
    """Whether a search was ever stored at `spec` (a database is asked by whoever opens it)."""
    if spec.startswith("sqlite:///"):
        return Path(spec.removeprefix("sqlite:///")).is_file()
    return "://" in spec or Path(spec).is_file()


def read_saved(folder: Path, name: str) -> dict:
    """What the launch saved in the study's `study.json`, read as a plain file (never through
    a link, never waiting on a FIFO); ConfigError naming the file when it is missing or not
    the tool's."""
    path = folder / STUDY_FILE
    if not os.path.lexists(path):
        raise ConfigError(
            f"no study {name!r} in {folder.parent} (pass --storage if it lives elsewhere)"
        )
    try:
        data = plain_files.read_bytes(path)
    except plain_files.TrustError as exc:
        raise damaged(folder, name, exc) from None
    return _parsed(data, folder, name)


def saved_launch(storage: str | Path, name: str) -> dict:
    """What study `name`'s launch saved (`read_saved`), read where the study lives: its folder,
    or straight from its bucket (never through the driver's mirror, which a running sweep on
    this machine writes: only `resume`, holding the study's lock, pulls into it)."""
    folder = study_dir(storage, name)
    if not bucket.is_remote(storage):
        return read_saved(folder, name)
    data = bucket.Bucket.parse(str(storage)).read(name, STUDY_FILE)
    if data is None:
        raise ConfigError(f"no study {name!r} in {storage} (pass --storage if it lives elsewhere)")
    return _parsed(data, folder, name)


def _parsed(data: bytes, folder: Path, name: str) -> dict:
    try:
        record = json.loads(data)
    except ValueError as exc:
        raise damaged(folder, name, exc) from None
    if not isinstance(record, dict) or not isinstance(record.get("options"), dict):
        raise damaged(folder, name, ValueError("not a map with the launch's options"))
    return record


def damaged(folder: Path, name: str, exc: Exception) -> ConfigError:
    return ConfigError(
        f"study {name!r}: {folder / STUDY_FILE} is damaged ({type(exc).__name__}: {exc}); "
        "it records the space and options the study was launched with"
    )
