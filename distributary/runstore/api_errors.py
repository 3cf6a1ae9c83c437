"""What the HTTP run store's requests answer besides JSON: the error of a failed status, and the marker of a
404 asked for with `missing_ok=True` (shared by `api_storage` and its deployment and concurrency parts)."""
from __future__ import annotations

from ..errors import RunStoreError

MISSING = object()    # what `request(..., missing_ok=True)` answers for a 404


class ApiError(RunStoreError):
    """The server answered with an error status (`status`)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


__all__ = ["MISSING", "ApiError"]
