"""`ReadCache`: answers a repeated read-only filter request (the UI's and the clients' polling: `POST
/api/flow_runs/filter` and friends) from memory while the run store has not changed since the answer was built.

Whether the store changed is asked of the database itself, so a write by any process (another server worker, a
flow recording into the same SQLite file, a worker on PostgreSQL) is seen at once. One read of the version serves
every request that arrived before it started (one read at a time; the requests arriving during it share the next,
and on PostgreSQL the read is asynchronous, so the event loop serves hits meanwhile): under load it is not one query
a request, and a request never gets a version read before it arrived:
- SQLite: `PRAGMA data_version` on a connection of the cache's own, which changes whenever another connection
  commits (every write goes through other connections);
- PostgreSQL: the current snapshot (`pg_current_snapshot()`), which changes whenever any transaction that wrote
  something commits or starts; while it is the same, every query sees the same data.
The version is read before the request runs, so an answer is never filed under a version older than the data it
was built from, and a commit in between only makes the next request a miss. Only the routes whose answer is a
function of the stored data and the request alone are cached (no clock, no side effects)."""
from __future__ import annotations

import asyncio
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

    async def read(self) -> Any:
        """The version, read from the event loop (a local SQLite read is quicker than a hand-off)."""
        return self()

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
    """Read on an asyncio connection (psycopg's), so the event loop serves other requests during the round trip
    instead of waiting for the database."""

    def __init__(self, engine: Any):
        super().__init__()
        self.engine = engine
        self.aconn: Any = None

    def reset(self) -> None:
        super().reset()
        self.aconn = None  # a broken connection: psycopg has closed it, or its loop is gone

    async def read(self) -> Any:
        import psycopg

        conn = self.aconn
        if conn is None or conn.closed:
            dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            # autocommit: never hold a transaction (and so a snapshot) open
            conn = self.aconn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=10)
        cur = await conn.execute("SELECT pg_current_snapshot()::text")
        return (await cur.fetchone())[0]


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
        self._next_read: asyncio.Future[Any] | None = None  # the version read the requests arrived so far wait for
        self._reading: asyncio.Task[None] | None = None
        self.hits = self.misses = self.version_reads = 0

    async def _current_version(self) -> Any:
        if not self._looked_up:
            self._version, self._looked_up = version_reader(self.store.storage()), True
        reader = self._version
        if reader is None:
            return None
        try:
            return await reader.read()
        except Exception:  # the database is unreachable: the route answers (with its own clear error)
            reader.reset()
            return None

    async def _version_after_arrival(self) -> Any:
        """The store's version, read after this request arrived: the next read to start, shared with every request
        arriving before it starts (at most one read runs at a time; the requests arriving meanwhile wait for the
        one after it)."""
        loop = asyncio.get_running_loop()
        pending = self._next_read
        if pending is None or pending.get_loop() is not loop:  # (a test client's loop that ended before the read)
            pending = self._next_read = loop.create_future()
            if self._reading is None or self._reading.get_loop() is not loop or self._reading.done():
                self._reading = loop.create_task(self._read_for_waiters())
        return await asyncio.shield(pending)  # one waiter cancelled (its client gone) cancels nobody else's read

    async def _read_for_waiters(self) -> None:
        while self._next_read is not None:
            pending, self._next_read = self._next_read, None  # who arrives from now on waits for the next read
            self.version_reads += 1
            try:
                pending.set_result(await self._current_version())
            except Exception as exc:  # the store cannot be opened: each waiter's request fails as it did unshared
                pending.set_exception(exc)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in CACHED_PATHS:
            await self.app(scope, receive, send)
            return
        version = await self._version_after_arrival()
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
