"""The web UI (placeholder: the UI's own package replaces it)."""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
