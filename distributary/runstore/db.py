"""Opening the run-store database: the URL, the engine (SQLite in WAL mode with a busy timeout, or
PostgreSQL through psycopg 3), and the schema, created and upgraded by the Alembic migrations on first use.

Every process on a machine opens the same SQLite file (`DISTRIBUTARY_HOME/runs.db`) unless
`DISTRIBUTARY_API_DATABASE_CONNECTION_URL` names another database.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .. import settings
from ..errors import RunStoreError, RunStoreRevisionError
from .urls import HEAD, database_url, normalize_url

MIGRATIONS = Path(__file__).with_name("migrations")
CONNECT_TIMEOUT = 10  # seconds to reach a PostgreSQL server

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def redact(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def get_engine(url: str | None = None, migrate: bool = True) -> Engine:
    """The process-wide engine for `url` (default: `database_url()`), its schema at the newest revision."""
    url = url or database_url()
    eng = _engines.get(url)
    if eng is not None:
        return eng
    with _engines_lock:
        eng = _engines.get(url)
        if eng is None:
            eng = _create_engine(url)
            if migrate:
                upgrade(eng)
            _engines[url] = eng
    return eng


def dispose_engines() -> None:
    """Close every pooled connection (tests; after a fork)."""
    with _engines_lock:
        for eng in _engines.values():
            eng.dispose()
        _engines.clear()


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        busy = float(settings.get("RUNSTORE_BUSY_TIMEOUT"))
        eng = sa.create_engine(url, connect_args={"timeout": busy, "check_same_thread": False},
                               poolclass=sa.pool.QueuePool, pool_size=4, max_overflow=8)

        @event.listens_for(eng, "connect")
        def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=OFF")
            cur.close()

        @event.listens_for(eng, "begin")
        def _on_begin(conn: Any) -> None:
            # IMMEDIATE: take the write lock at the start, so two writers never deadlock on a lock upgrade
            # (which SQLite reports as "database is locked" without waiting for the busy timeout).
            # Reads (execution option `distributary_read`) begin deferred: in WAL mode they never wait for a
            # writer, so `flow-run ls` or the client answer while runs are being recorded.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("distributary_read")
                                 else "BEGIN IMMEDIATE")
        return eng
    if url.startswith("postgresql"):
        return sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT})
    raise RunStoreError(f"run store URL {redact(url)!r} is not supported: use postgresql://... or sqlite:///path "
                        "(DISTRIBUTARY_API_DATABASE_CONNECTION_URL)")


def current_revision(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


@contextlib.contextmanager
def _migration_lock(eng: Engine) -> Iterator[None]:
    """One process migrates at a time: a file lock next to the SQLite file, an advisory lock on PostgreSQL."""
    if eng.dialect.name == "sqlite":
        import fcntl

        path = eng.url.database
        if not path or path == ":memory:":
            yield
            return
        with open(path + ".migrate-lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
    else:
        with eng.connect() as conn:
            conn.exec_driver_sql("SELECT pg_advisory_lock(727274)")
            try:
                yield
            finally:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(727274)")
                conn.commit()


def _check(eng: Engine) -> str | None:
    """The database's revision, or a RunStoreError saying why it cannot be read."""
    try:
        with eng.connect().execution_options(distributary_read=True) as conn:
            return current_revision(conn)
    except sa.exc.DatabaseError as exc:
        where = redact(str(eng.url))
        if eng.dialect.name == "sqlite":
            raise RunStoreError(
                f"the run store {eng.url.database} is not a readable SQLite database ({exc.orig}); move it "
                "away to start a new one, or point DISTRIBUTARY_API_DATABASE_CONNECTION_URL elsewhere") from exc
        reason = " ".join(str(exc.orig).split())
        if "authentication failed" in reason:  # 28P01 / 28000: credentials, not the network
            said = reason.split("FATAL:")[-1].strip()
            raise RunStoreError(f"cannot log in to the run store at {where}: {said}; check the user name and "
                                "password in DISTRIBUTARY_API_DATABASE_CONNECTION_URL (environment or profile)") from exc
        raise RunStoreError(f"cannot use the run store at {where}: {reason}".strip()) from exc
    except sa.exc.OperationalError as exc:  # pragma: no cover - DatabaseError covers it; kept for clarity
        raise RunStoreError(f"cannot reach the run store at {redact(str(eng.url))}: {exc.orig}") from exc


def upgrade(eng: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (default: the newest) with the migrations; no-op when it is there."""
    rev = _check(eng)
    if rev == HEAD and revision == "head":
        return
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    known = {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}
    with _migration_lock(eng):
        rev = _check(eng)
        if rev is not None and rev not in known:
            raise RunStoreRevisionError(
                f"the run store at {redact(str(eng.url))} is at schema revision {rev!r}, newer than this "
                f"distributary knows (its newest is {HEAD!r}): upgrade distributary, or use another database")
        with eng.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)


def schema_revision(eng: Engine) -> str | None:
    return _check(eng)


def home_db_path() -> Path:
    return Path(settings.get("HOME")) / "runs.db"


__all__ = ["database_url", "get_engine", "upgrade", "dispose_engines", "schema_revision", "HEAD", "normalize_url",
           "redact", "home_db_path"]
