"""The distributary server: the run store over HTTP on Prefect's REST paths (`api/`) and the web UI (`ui/`),
one FastAPI app served by uvicorn (`distributary server start`).

Importing this package imports nothing heavy; `create_app` imports FastAPI.
"""
from __future__ import annotations

from typing import Any


def create_app(*args: Any, **kwargs: Any) -> Any:
    """The server's FastAPI app (see `distributary.server.app.create_app`)."""
    from .app import create_app as _create

    return _create(*args, **kwargs)


__all__ = ["create_app"]
