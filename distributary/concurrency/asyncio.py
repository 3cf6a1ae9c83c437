"""`concurrency()` and `rate_limit()` for async code (Prefect 3's `prefect.concurrency.asyncio`): the waits do
not block the event loop."""
from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from ..runstore import slots
from ._common import Names, holder_of, names_of


@contextlib.asynccontextmanager
async def concurrency(names: Names, occupy: int = 1, timeout_seconds: float | None = None,
                      max_retries: int | None = None, lease_duration: float = 300.0, strict: bool = False,
                      holder: dict[str, Any] | None = None) -> AsyncIterator[None]:
    """`async with concurrency("database"):`: as `distributary.concurrency.sync.concurrency`, awaited."""
    got = await slots.run_steps_async(slots.acquire_steps(
        names_of(names), occupy, "concurrency", timeout_seconds, max_retries, lease_duration, strict,
        holder if holder is not None else holder_of()))
    try:
        yield
    finally:
        import asyncio

        await asyncio.to_thread(slots.release, got)


async def rate_limit(names: Names, occupy: int = 1, timeout_seconds: float | None = None,
                     strict: bool = False) -> None:
    """`await rate_limit("github-api")`: as `distributary.concurrency.sync.rate_limit`, awaited."""
    await slots.run_steps_async(slots.acquire_steps(names_of(names), occupy, "rate_limit", timeout_seconds, None,
                                                    300.0, strict))


__all__ = ["concurrency", "rate_limit"]
