"""`MemoryLockManager`: locks shared by the threads of one process."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class _Lock:
    holder: str
    expires: float | None


class MemoryLockManager:
    """Locks held in this process's memory (threads of one process; the thread runner)."""

    def __init__(self) -> None:
        self._locks: dict[str, _Lock] = {}
        self._cond = threading.Condition()

    def _current(self, key: str) -> _Lock | None:
        lock = self._locks.get(key)
        if lock is not None and lock.expires is not None and lock.expires <= time.monotonic():
            del self._locks[key]
            self._cond.notify_all()
            return None
        return lock

    def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                     hold_timeout: float | None = None) -> bool:
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        with self._cond:
            while True:
                lock = self._current(key)
                if lock is None or lock.holder == holder:
                    expires = None if hold_timeout is None else time.monotonic() + hold_timeout
                    self._locks[key] = _Lock(holder, expires)
                    return True
                wait = None if deadline is None else deadline - time.monotonic()
                if lock.expires is not None:
                    left = lock.expires - time.monotonic()
                    wait = left if wait is None else min(wait, left)
                if wait is not None and wait <= 0 and deadline is not None and time.monotonic() >= deadline:
                    return False
                self._cond.wait(None if wait is None else max(wait, 0.001))

    def release_lock(self, key: str, holder: str) -> None:
        with self._cond:
            lock = self._current(key)
            if lock is None or lock.holder != holder:
                raise ValueError(f"No lock on {key!r} is held by {holder!r}; it cannot be released.")
            del self._locks[key]
            self._cond.notify_all()

    def is_locked(self, key: str) -> bool:
        with self._cond:
            return self._current(key) is not None

    def is_lock_holder(self, key: str, holder: str) -> bool:
        with self._cond:
            lock = self._current(key)
            return lock is not None and lock.holder == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._current(key) is not None:
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    return False
                self._cond.wait(0.05 if wait is None else min(wait, 0.05))
            return True
