"""Writes run-event batches to the SQLite run store with the `sqlite3` module alone.

A process that only records its runs (a flow run from a script) need not import SQLAlchemy: when the database
file exists at the schema revision this code writes, the sink writes through this; otherwise (a new file, an old
revision, another backend) it opens the full `SqlRunStorage`, which creates or migrates the database.
"""
from __future__ import annotations

import sqlite3
from typing import Any

from .. import settings
from .batch import Batch, write_batch
from .urls import HEAD


class NotAtHead(LookupError):
    """The database needs the full storage (to be created or migrated)."""


class SqliteWriter:
    def __init__(self, path: str):
        self.path = path
        self.url = f"sqlite:///{path}"
        busy = float(settings.get("RUNSTORE_BUSY_TIMEOUT"))
        conn = sqlite3.connect(path, timeout=busy, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            rev = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error as exc:
            conn.close()
            raise NotAtHead(str(exc)) from exc
        if rev is None or rev[0] != HEAD:
            conn.close()
            raise NotAtHead(f"schema revision {rev and rev[0]!r}, this code writes {HEAD!r}")
        self._conn = conn

    def write(self, batch: Batch) -> None:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")  # the write lock first: writers queue on the busy timeout, never deadlock
        try:
            write_batch(cur, "sqlite", batch)
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
        cur.close()

    def defer_checkpoints(self, pages: int) -> None:
        """Commits checkpoint the WAL only past `pages` pages; `checkpoint()` does it when convenient."""
        self._conn.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the database, as far as no reader needs it (never waits for one)."""
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:  # busy: the next commit past the limit, or the next idle moment, does it
            pass

    def close(self) -> None:
        self._conn.close()


def open_writer(url: str | None) -> Any:
    """The lightest writer for `url` (default: the configured run store; the server's API when
    DISTRIBUTARY_API_URL is set)."""
    import os

    from .urls import api_url, database_url, sqlite_path

    if url is None and api_url():  # the API client (and its schemas) imported only then
        from .api_storage import get_api_storage

        return get_api_storage()
    url = url or database_url()
    path = sqlite_path(url)
    if path is not None and os.path.exists(path):
        try:
            return SqliteWriter(path)
        except NotAtHead:
            pass
    from .storage import get_storage

    return get_storage(url)
