"""What the routes depend on: the run store the app serves."""
from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import Depends, Request


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
    """The `SqlRunStorage` of the app serving `request` (a FastAPI dependency)."""
    return request.app.store.storage()


Storage = Annotated[Any, Depends(get_storage)]  # a route's `storage: Storage` parameter
