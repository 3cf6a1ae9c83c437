"""What the routes depend on: the run store the app serves."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Request

T = TypeVar("T")
READ_THREADS = 2  # database reads at once per server process (the rest wait their turn in the event loop)


class ServedStore:
    """The app's run store: its URL, and the `SqlRunStorage` opened (and migrated) on first use."""

    def __init__(self, url: str | None, storage: Any = None):
        self.url = url
        self._storage = storage
        self._lock = threading.Lock()

    def storage(self) -> Any:
        if self._storage is None:
            with self._lock:
                if self._storage is None:
                    from ..runstore.storage import get_storage as open_storage

                    self._storage = open_storage(self.url)
        return self._storage


def get_storage(request: Request) -> Any:
    """The `SqlRunStorage` of the app serving `request`."""
    return request.app.store.storage()


async def _storage_dependency(request: Request) -> Any:
    # async, so FastAPI does not send it to a thread: the storage is opened once, then this is an attribute read
    return request.app.store.storage()


Storage = Annotated[Any, Depends(_storage_dependency)]  # a route's `storage: Storage` parameter


_limiters: dict[int, anyio.CapacityLimiter] = {}


async def read_in_thread(fn: Callable[[], T]) -> T:
    """Run a database read (and its rendering) in one of `READ_THREADS` threads. A route that reads much under many
    concurrent clients uses this instead of FastAPI's 40-thread pool: 50 requests in 40 threads contend for the
    GIL and the connection pool and each takes as long as all of them; a few threads serve them in turn."""
    loop = id(asyncio.get_running_loop())
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = anyio.CapacityLimiter(READ_THREADS)
    return await anyio.to_thread.run_sync(fn, limiter=limiter)
