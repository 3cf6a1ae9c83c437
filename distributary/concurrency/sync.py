"""`concurrency()` and `rate_limit()` for synchronous code (Prefect 3's `prefect.concurrency.sync`)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..runstore import slots
from ._common import Names, holder_of, names_of


@contextlib.contextmanager
def concurrency(names: Names, occupy: int = 1, timeout_seconds: float | None = None,
                max_retries: int | None = None, lease_duration: float = 300.0, strict: bool = False,
                holder: dict[str, Any] | None = None) -> Iterator[None]:
    """Hold `occupy` slots of each named limit for the block, waiting while one is full; they are given back
    when the block ends, also on an exception. The slots are leased for `lease_duration` seconds and renewed
    while the block runs, so a process that dies gives them back once its lease expires.

        with concurrency("database", occupy=2, timeout_seconds=30):
            ...

    A name that is not a limit is a warning and no limit (`strict=True`: `ConcurrencySlotAcquisitionError`);
    `timeout_seconds` passing first raises `AcquireConcurrencySlotTimeoutError` (a `TimeoutError`)."""
    got = slots.run_steps(slots.acquire_steps(
        names_of(names), occupy, "concurrency", timeout_seconds, max_retries, lease_duration, strict,
        holder if holder is not None else holder_of()))
    try:
        yield
    finally:
        slots.release(got)


def rate_limit(names: Names, occupy: int = 1, timeout_seconds: float | None = None, strict: bool = False) -> None:
    """Take `occupy` slots of each named limit and keep them: they come back at the limit's
    `slot_decay_per_second`, so calls pass at that rate (bursts up to the limit). Waits while a limit is
    full; the limits need a slot decay (`distributary gcl create NAME --limit 5 --slot-decay-per-second 1`)."""
    slots.run_steps(slots.acquire_steps(names_of(names), occupy, "rate_limit", timeout_seconds, None, 300.0,
                                        strict))


__all__ = ["concurrency", "rate_limit"]
