"""Concurrency limits as the client and the API return them (Prefect 3's `GlobalConcurrencyLimitResponse` and,
for tag-based task limits, `ConcurrencyLimit`)."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import Field

from .objects import ObjectBase

TAG_PREFIX = "tag:"  # a tag-based task-run limit is the global limit named "tag:TAG" (as in Prefect 3)


class GlobalConcurrencyLimit(ObjectBase):
    """A global concurrency limit (or rate limit, with `slot_decay_per_second` > 0)."""
    id: uuid.UUID
    name: str
    limit: int
    active: bool = True
    active_slots: int = 0
    denied_slots: int = 0
    slot_decay_per_second: float = 0.0
    avg_slot_occupancy_seconds: float = 2.0
    created: dt.datetime | None = None
    updated: dt.datetime | None = None


class ConcurrencyLimit(ObjectBase):
    """A tag-based task-run concurrency limit; `active_slots` are the task runs holding a slot."""
    id: uuid.UUID
    tag: str
    concurrency_limit: int
    active_slots: list[uuid.UUID] = Field(default_factory=list)
    created: dt.datetime | None = None
    updated: dt.datetime | None = None


class Acquisition(ObjectBase):
    """What an attempt to take slots answered: `acquired`, the lease to release them with (None for a rate limit,
    whose slots decay), the limits that took part, the names that are not limits, and for a refusal a hint of
    how long to wait."""
    acquired: bool
    lease_id: uuid.UUID | None = None
    limits: list[dict[str, Any]] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)
    retry_after: float | None = None
