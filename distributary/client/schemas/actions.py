"""Prefect's `prefect.client.schemas.actions` models the client accepts."""
from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, Field


class VariableCreate(BaseModel):
    name: str
    value: Any = None
    tags: Optional[list[str]] = Field(default=None)


class VariableUpdate(BaseModel):
    name: Optional[str] = None
    value: Any = None
    tags: Optional[list[str]] = None
