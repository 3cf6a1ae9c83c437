"""`/health`, `/version`, `/admin/version`: what a client asks before anything else."""
from __future__ import annotations

from fastapi import APIRouter

# Prefect's client compares the major version of `/admin/version` with its own and refuses another major:
# the Prefect REST API version whose paths and shapes this server follows.
PREFECT_API_VERSION = "3.4.0"

router = APIRouter(tags=["admin"])


@router.get("/health")
def health() -> bool:
    """True while the server answers."""
    return True


@router.get("/version")
def version() -> str:
    """The Prefect API version this server is compatible with."""
    return PREFECT_API_VERSION


@router.get("/admin/version")
def admin_version() -> str:
    """The Prefect API version this server is compatible with (Prefect clients check its major version)."""
    return PREFECT_API_VERSION


@router.get("/admin/distributary-version")
def distributary_version() -> str:
    """The version of distributary serving the API."""
    from ... import __version__

    return __version__
