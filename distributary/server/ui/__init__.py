"""The web UI: server-rendered pages at `/` with a little JavaScript, static files shipped in the package (no CDN),
and the JSON routes the pages poll under `/api/ui`. `router` is what the server app includes."""
from __future__ import annotations

from .deployment_pages import router as _deployment_router
from .limit_pages import router as _limit_router
from .pages import router

router.include_router(_deployment_router)
router.include_router(_limit_router)

__all__ = ["router"]
