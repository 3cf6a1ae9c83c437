"""`ReadCache`: answers a repeated read-only filter request (the UI's and the clients' polling: `POST
/api/flow_runs/filter` and friends) from memory while the run store has not changed since the answer was built.

Whether the store changed is asked of the database itself, once a request, so a write by any process (another
server worker, a flow recording into the same SQLite file, a worker on PostgreSQL) is seen at once:
- SQLite: `PRAGMA data_version` on a connection of the cache's own, which changes whenever another connection
  commits (every write goes through other connections);
- PostgreSQL: the current snapshot (`pg_current_snapshot()`), which changes whenever any transaction that wrote
  something commits or starts; while it is the same, every query sees the same data.
The version is read before the request runs, so an answer is never filed under a version older than the data it
was built from, and a commit in between only makes the next request a miss. Only the routes whose answer is a
function of the stored data and the request alone are cached (no clock, no side effects)."""
from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CACHED_PATHS = frozenset(f"/api/{what}/{op}" for what in ("flows", "flow_runs", "task_runs")
                         for op in ("filter", "count"))
MAX_ENTRIES = 512
MAX_ANSWER_BYTES = 4 << 20  # a bigger answer (a page of 10^4 task runs) is rebuilt each time, not kept


def version_reader(storage: Any) -> _Version | None:
    """A function returning the store's current data version, or None when the store cannot say (an in-memory
    SQLite database, a storage that is not SQL): then nothing is cached."""
    engine = getattr(storage, "engine", None)
    if engine is None:
        return None
    if engine.dialect.name == "sqlite":
        path = engine.url.database
        if not path or path == ":memory:":
            return None
        return _SqliteVersion(path)
    if engine.dialect.name == "postgresql":
        return _PostgresVersion(engine)
    return None


class _Version:
    """The store's data version, read on a connection of its own (one per thread: in practice only the event
    loop's thread asks)."""

    def __init__(self) -> None:
        self.local = threading.local()

    def reset(self) -> None:
        """Forget the connection (after an error): the next call opens a new one."""
        conn, self.local.conn = getattr(self.local, "conn", None), None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken
                pass

    def __call__(self) -> Any:
        raise NotImplementedError


class _SqliteVersion(_Version):
    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def __call__(self) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        return conn.execute("PRAGMA data_version").fetchone()[0]


class _PostgresVersion(_Version):
    def __init__(self, engine: Any):
        super().__init__()
        self.engine = engine

    def __call__(self) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = self.engine.raw_connection()
            conn.driver_connection.autocommit = True  # never hold a transaction (and so a snapshot) open
        cur = conn.driver_connection.cursor()
        try:
            cur.execute("SELECT pg_current_snapshot()::text")
            return cur.fetchone()[0]
        finally:
            cur.close()


class ReadCache:
    """ASGI middleware in front of the app's routes (inside auth and the body limit): serves `CACHED_PATHS`
    answers built under the store's current data version; everything else passes through untouched."""

    def __init__(self, app: ASGIApp, store: Any, max_entries: int = MAX_ENTRIES):
        self.app = app
        self.store = store  # deps.ServedStore: its storage is opened on first use
        self.max_entries = max_entries
        self.entries: OrderedDict[tuple[str, bytes, bytes], tuple[Any, int, list[Any], bytes]] = OrderedDict()
        self._looked_up = False
        self._version: _Version | None = None
        self.hits = self.misses = 0

    def _current_version(self) -> Any:
        if not self._looked_up:
            self._version, self._looked_up = version_reader(self.store.storage()), True
        reader = self._version
        if reader is None:
            return None
        try:
            return reader()
        except Exception:  # the database is unreachable: the route answers (with its own clear error)
            reader.reset()
            return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in CACHED_PATHS:
            await self.app(scope, receive, send)
            return
        version = self._current_version()
        if version is None:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        key = (scope["path"], scope.get("query_string", b""), body)
        entry = self.entries.get(key)
        if entry is not None and entry[0] == version:
            self.hits += 1
            self.entries.move_to_end(key)
            _, status, headers, answer = entry
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": answer})
            return
        self.misses += 1
        await self._answer_and_keep(scope, body, send, key, version)

    async def _answer_and_keep(self, scope: Scope, body: bytes, send: Send, key: tuple[str, bytes, bytes],
                               version: Any) -> None:
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        start: Message | None = None
        parts: list[bytes] = []
        size = 0

        async def keep(message: Message) -> None:
            nonlocal start, size
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body" and size <= MAX_ANSWER_BYTES:
                parts.append(message.get("body", b""))
                size += len(parts[-1])
            await send(message)

        await self.app(scope, replay, keep)
        if start is not None and start["status"] == 200 and size <= MAX_ANSWER_BYTES:
            self.entries[key] = (version, 200, list(start.get("headers", [])), b"".join(parts))
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)
