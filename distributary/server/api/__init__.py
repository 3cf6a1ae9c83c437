"""The REST API: one router per resource, on Prefect's paths and JSON shapes, mounted under `/api`."""
from __future__ import annotations

from fastapi import APIRouter


def api_router() -> APIRouter:
    """Every resource router of the API (paths relative to `/api`)."""
    from . import admin

    root = APIRouter()
    for module in (admin,):
        root.include_router(module.router)
    return root
