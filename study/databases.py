"""A team's PostgreSQL: checked before anything launches, and the study lock where a study has no
folder of its own (`study.sweep.lock`). MLflow's store (`--tracking-uri postgresql://…`) and
Optuna's study (`--search-db postgresql://…`) open their databases themselves (SQLAlchemy, with
psycopg 3); this module only asks whether the server answers, and holds locks.

Credentials: in the URL, or better outside it (PGPASSWORD, ~/.pgpass, which libpq reads): a URL's
password is saved with the study (study.json, Tune's state).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

from models import ConfigError, ResourceError

SCHEMES = ("postgresql", "postgresql+psycopg", "postgresql+psycopg2")
CONNECT_TIMEOUT_S = 5


def is_database(url: str | None) -> bool:
    """Whether `url` names a PostgreSQL database."""
    return bool(url) and url.split("://", 1)[0] in SCHEMES


def shown(url: str) -> str:
    """`url` with its password masked, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _engine(url: str):
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    if not is_database(url):
        raise ConfigError(f"{url!r} is not a PostgreSQL URL: use postgresql://user@host:port/db")
    return create_engine(
        url, poolclass=NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
    )


def check(url: str, option: str) -> None:
    """Exit 2 with one line naming the server (and `option`, the flag that gave it) when the
    database does not answer, refuses the credentials or does not exist."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with _engine(url).connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()
        raise ResourceError(
            f"{option} {shown(url)}: the database cannot be used ({reason[0] if reason else exc}); "
            "check that PostgreSQL runs there, the user and password (PGPASSWORD, ~/.pgpass) "
            "and that the database exists (createdb)"
        ) from None


def lock_key(name: str) -> int:
    """A 64-bit advisory-lock key for `name` (PostgreSQL's keys are signed bigints)."""
    digest = hashlib.sha256(f"aestudy:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def advisory_lock(url: str, name: str, note: str) -> Iterator[bool]:
    """Try to take PostgreSQL's session-level advisory lock for `name`; yields whether it was
    taken, and holds it (on a connection of its own) until the block ends. The server releases
    it when the connection ends, however its holder dies (a SIGKILLed driver's connection is
    closed by its kernel). `note` (the holder) is set as the connection's application_name, so
    a refused driver can name the holder (`holder`)."""
    from sqlalchemy import text

    engine = _engine(url)
    with engine.connect() as conn:
        conn.execute(text("SELECT set_config('application_name', :note, false)"), {"note": note})
        conn.commit()
        taken = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key(name)})
        held = bool(taken.scalar())
        conn.commit()
        yield held
        if held:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key(name)})
            conn.commit()


def holder(url: str, name: str) -> str | None:
    """The application_name of the session holding `name`'s advisory lock, if one does."""
    from sqlalchemy import text

    key = lock_key(name)
    query = text(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted "
        "AND ((l.classid::bigint << 32) | l.objid::bigint) = :k"
    )
    with _engine(url).connect() as conn:
        row = conn.execute(query, {"k": key}).first()
    return (row[0] or "another process") if row else None
