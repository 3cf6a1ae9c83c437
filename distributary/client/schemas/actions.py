"""Prefect's `prefect.client.schemas.actions` models the client accepts."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class VariableCreate(BaseModel):
    name: str
    value: Any = None
    tags: list[str] | None = Field(default=None)


class VariableUpdate(BaseModel):
    name: str | None = None
    value: Any = None
    tags: list[str] | None = None
