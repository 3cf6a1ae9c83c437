"""The run store: every flow run, task run, state, log, artifact and variable, in SQLite (one file under
`DISTRIBUTARY_HOME`, shared by every local process) or PostgreSQL (`DISTRIBUTARY_API_DATABASE_CONNECTION_URL`).

`ensure_sink()` (called by the engine when a flow run starts) registers the batched run-event sink; importing
this package does not import SQLAlchemy (the writer opens the database in the background). `get_storage()`
returns the `RunStorage` the client and the CLI read through.
"""
from __future__ import annotations

from typing import Any

from .sink import RunStoreSink, current_sink, ensure_sink, recording_enabled, stop_sink, write_artifact_now


def get_storage(url: str | None = None) -> Any:
    """The process-wide storage of `url`, by default the configured run store: the server's API when
    DISTRIBUTARY_API_URL is set (`ApiRunStorage`), else the database (`SqlRunStorage`, created and migrated on
    first use)."""
    if url is None:
        from .urls import api_url

        if api_url():
            from .api_storage import get_api_storage

            return get_api_storage()
    from .storage import get_storage as _get

    return _get(url)


def flush(timeout: float | None = 30.0) -> bool:
    """Deliver queued run events and wait until the run store has written them."""
    from ..runs import sink_hub

    return sink_hub().flush(timeout)


__all__ = ["RunStoreSink", "ensure_sink", "write_artifact_now", "current_sink", "stop_sink", "recording_enabled", "get_storage", "flush"]
