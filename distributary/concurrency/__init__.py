"""Global concurrency limits and rate limits (Prefect 3's `prefect.concurrency`): `concurrency(...)` and
`rate_limit(...)` in `distributary.concurrency.sync` and, awaitable, in `distributary.concurrency.asyncio`.

    from distributary.concurrency.sync import concurrency, rate_limit

    with concurrency("database", occupy=1):   # at most `limit` holders at once, across every process
        ...
    rate_limit("github-api")                  # at most `limit` at once, refilled at slot_decay_per_second

Limits live in the run store (`distributary gcl create database --limit 5`); tag-based task-run limits are the
limits named `tag:TAG` (`distributary concurrency-limit create TAG N`).
"""
from __future__ import annotations

from ..errors import AcquireConcurrencySlotTimeoutError, ConcurrencySlotAcquisitionError

__all__ = ["AcquireConcurrencySlotTimeoutError", "ConcurrencySlotAcquisitionError"]
