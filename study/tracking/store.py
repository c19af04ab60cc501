"""Where the tracking store is, whether it can be used, and the client that talks to it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from models import ConfigError, ResourceError
from study import databases

DEFAULT_DB = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
HOME_ENV = "AESTUDY_HOME"
# How the store is found when none is named, in the words of the commands' help.
STORE_DEFAULT = f"$MLFLOW_TRACKING_URI, else ${HOME_ENV}/{DEFAULT_DB} (~/.aestudy/{DEFAULT_DB})"


def home() -> Path:
    """Where studies and the default tracking store live: $AESTUDY_HOME, else ~/.aestudy.

    One absolute place, so every command (and `load_model`) finds the same store and studies
    wherever it is run from."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".aestudy").expanduser().resolve()


def resolve_tracking_uri(uri: str | None) -> str:
    """The tracking URI with any SQLite path made absolute (trials run in other folders).

    Default: $MLFLOW_TRACKING_URI where set, else `sqlite:///<home()>/mlflow.db`.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home() / DEFAULT_DB}"
    if uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).expanduser().resolve()}"
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    if databases.is_database(uri):
        return uri
    raise ConfigError(
        f"--tracking-uri {uri!r}: use sqlite:///path/to/mlflow.db, http://host:port or "
        "postgresql://user@host:port/db (the ./mlruns file store is gone from MLflow 3)"
    )


def local_artifact_root(uri: str) -> str | None:
    """Where a store the tool opens itself keeps artifacts: `mlartifacts/` beside a SQLite
    database; `<home>/mlartifacts` for a PostgreSQL one (a team's cluster serves that store with
    `study server`, artifacts in its bucket, and hands sweeps the server's http:// URI)."""
    if databases.is_database(uri):
        return (home() / ARTIFACTS_DIR).as_uri()
    if not uri.startswith("sqlite:///"):
        return None  # a tracking server stores (and proxies) artifacts itself
    return (Path(uri.removeprefix("sqlite:///")).parent / ARTIFACTS_DIR).as_uri()


def check_reachable(uri: str, must_exist: bool = False) -> None:
    """Fail with a clear message, before anything launches, if the store cannot be used.

    `must_exist`: a command that only reads (status, export, table, …) refuses a SQLite store
    that is not there rather than leave an empty database behind."""
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        if must_exist and not db.is_file():
            raise ConfigError(
                f"no tracking store at {db}: run a sweep first, or point at the store with "
                f"--tracking-uri, MLFLOW_TRACKING_URI or {HOME_ENV}"
            )
        folder = db.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise ResourceError(f"tracking store {uri}: folder {folder} is missing or not writable")
        if db.exists() and not _is_sqlite(db):
            raise ConfigError(
                f"tracking store {uri}: {db} is not an SQLite database; point --tracking-uri at "
                "an MLflow store (or a new file name: the store is made on first use)"
            )
        return
    if databases.is_database(uri):
        databases.check(uri, "--tracking-uri")
        return
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=5) as reply:
            if reply.status == 200:
                return
            raise ResourceError(f"tracking server {uri} answered {reply.status} on /health")
    except (urllib.error.URLError, OSError) as exc:
        raise ResourceError(
            f"tracking server {uri} cannot be reached ({exc}); start one with "
            "`python -m study server` or fix --tracking-uri"
        ) from None


def _is_sqlite(path: Path) -> bool:
    """Whether `path` is an SQLite database file (its 16-byte header says so)."""
    try:
        with open(path, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


@cache
def client(uri: str):
    """An MlflowClient for `uri` (imported lazily: mlflow takes seconds to import)."""
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in logs
    # the tool prints each study's page itself; MLflow's "View run" line per closed run is noise
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if not uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    with _one_creator(Path(uri.removeprefix("sqlite:///"))):
        c = MlflowClient(tracking_uri=uri, registry_uri=uri)
        c.search_experiments(max_results=1)  # the store is opened (its tables made) by now
    return c


@contextlib.contextmanager
def _one_creator(db: Path) -> Iterator[None]:
    """Hold an exclusive lock beside `db` while this process first opens it.

    MLflow makes a new SQLite store's tables (and upgrades old ones) on first use, with no lock
    of its own: two processes opening one new store at once (a sweep's driver and a `status`, two
    sweeps in one home) raced, and one of them died in the migration ("duplicate column name").
    The lock file is opened without following a link, and never written; where it cannot be
    opened (a link planted there, a folder this user may only read) the store is opened without
    it, as before."""
    try:
        fd = os.open(
            db.with_name(f".{db.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644
        )
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel however its holder ends
        yield
    finally:
        os.close(fd)


def as_params(values: dict[str, Any]) -> list:
    """MLflow params of the values that are set, as strings, sorted by name."""
    from mlflow.entities import Param

    return [Param(k, str(v)) for k, v in sorted(values.items()) if v is not None]


@dataclass(frozen=True)
class RunData:
    """One run's final metrics, params and tags, as plain dicts."""

    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]


def run_data(uri: str, run_id: str) -> RunData:
    """What a run recorded (latest value of each metric)."""
    run = client(uri).get_run(run_id)
    return RunData(dict(run.data.metrics), dict(run.data.params), dict(run.data.tags))


def metric_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of every logged value of `key`, by step."""
    return sorted((m.step, m.value) for m in client(uri).get_metric_history(run_id, key))


def download_artifacts(uri: str, run_id: str, path: str, into: str) -> str:
    """Download a run's artifact `path` ("" for all) into the folder `into`; returns where."""
    return client(uri).download_artifacts(run_id, path, into)
