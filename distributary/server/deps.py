"""What the routes depend on: the run store the app serves."""
from __future__ import annotations

import threading
from typing import Any

from fastapi import Request

_lock = threading.Lock()


def get_storage(request: Request) -> Any:
    """The app's `SqlRunStorage` (opened and migrated on first use)."""
    state = request.app.state
    if state.storage is None:
        with _lock:
            if state.storage is None:
                from ..runstore.storage import get_storage as open_storage

                state.storage = open_storage(state.database_url)
    return state.storage
