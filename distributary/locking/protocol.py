"""The lock-manager interface of `prefect.locking`: named locks held by a holder, with acquire and hold timeouts."""
from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class LockManager(Protocol):
    def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                     hold_timeout: float | None = None) -> bool:
        """Take the lock on `key` for `holder`, waiting at most `acquire_timeout` s (None: for ever). A lock held
        longer than `hold_timeout` s counts as released. True if taken (also if `holder` holds it already)."""
        ...

    def release_lock(self, key: str, holder: str) -> None:
        """Release `holder`'s lock on `key`; raises ValueError if `holder` does not hold it."""
        ...

    def is_locked(self, key: str) -> bool: ...

    def is_lock_holder(self, key: str, holder: str) -> bool: ...

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until `key` is not locked (at most `timeout` s); True if it was released in time."""
        ...
