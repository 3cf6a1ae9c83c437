"""The web UI: server-rendered pages at `/` with a little JavaScript, static files shipped in the package (no CDN),
and the JSON routes the pages poll under `/api/ui`. `router` is what the server app includes."""
from __future__ import annotations

from .pages import router

__all__ = ["router"]
