"""Taking concurrency slots from a process: the wait (attempts with backoff until a timeout), and the one thread
per process that renews the leases it holds, so a holder that dies (SIGKILL included) stops renewing and its slots
come back when the lease expires.

`acquire_steps` is a generator that yields a callable to call (store I/O) or a number of seconds to sleep, so the
sync and async context managers (`distributary.concurrency`) and the task engine drive the same wait.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Generator, Sequence
from functools import partial
from typing import Any

from ..errors import AcquireConcurrencySlotTimeoutError, ConcurrencySlotAcquisitionError
from ..schemas.concurrency import Acquisition

_log = logging.getLogger("distributary.concurrency")
FIRST_WAIT, MAX_WAIT = 0.02, 0.5  # seconds between attempts: doubling from FIRST_WAIT up to MAX_WAIT
Step = Any  # a callable (store I/O: call it, send its result back) or a float (sleep that long)


def store() -> Any:
    from . import get_storage

    return get_storage()


def acquire_steps(names: Sequence[str], occupy: int = 1, mode: str = "concurrency",
                  timeout_seconds: float | None = None, max_retries: int | None = None,
                  lease_duration: float = 300.0, strict: bool = False, holder: dict[str, Any] | None = None,
                  warn_missing: bool = True) -> Generator[Step, Any, Acquisition]:
    """Take the slots, waiting while a limit is full; returns the acquisition (its lease is renewed by the
    keeper until `release`). Names that are not limits: a warning and no limit (`strict`: an error)."""
    deadline = None if timeout_seconds is None else time.monotonic() + float(timeout_seconds)
    wait = FIRST_WAIT
    tries = 0
    st = yield store
    while True:
        try:
            got: Acquisition = yield (lambda: st.acquire_concurrency_slots(
                names, occupy, mode=mode, lease_seconds=lease_duration if mode == "concurrency" else None,
                holder=holder))
        except Exception as exc:
            raise ConcurrencySlotAcquisitionError(f"could not take concurrency slots of {list(names)}: {exc}") from exc
        if got.missing:
            if strict:
                if got.acquired and got.lease_id is not None:
                    yield partial(st.release_concurrency_slots, got.lease_id)
                raise ConcurrencySlotAcquisitionError(
                    f"concurrency limit(s) {got.missing} do not exist (strict=True): create them with `distributary "
                    f"gcl create {got.missing[0]} --limit N`")
            if warn_missing:
                _log.warning("Concurrency limit(s) %s do not exist: running without them (create one with "
                             "`distributary gcl create NAME --limit N`).", got.missing)
        if got.acquired:
            if got.lease_id is not None:
                keeper().hold(st, str(got.lease_id), lease_duration)
            return got
        tries += 1
        if max_retries is not None and tries > max_retries:
            raise ConcurrencySlotAcquisitionError(
                f"no concurrency slot of {list(names)} after {max_retries} retries")
        pause = min(MAX_WAIT, max(wait, min(got.retry_after or 0.0, MAX_WAIT))) * random.uniform(0.8, 1.2)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AcquireConcurrencySlotTimeoutError(
                    f"Attempt to acquire concurrency slots of {list(names)} timed out after {timeout_seconds:g} "
                    "second(s)")
            pause = min(pause, left)
        yield pause
        wait = min(MAX_WAIT, wait * 2)


def run_steps(gen: Generator[Step, Any, Any]) -> Any:
    """Drive `acquire_steps` in this thread."""
    try:
        step = next(gen)
        while True:
            if callable(step):
                try:
                    value = step()
                except BaseException as exc:
                    step = gen.throw(exc)
                    continue
                step = gen.send(value)
            else:
                time.sleep(step)
                step = next(gen)
    except StopIteration as stop:
        return stop.value


async def run_steps_async(gen: Generator[Step, Any, Any]) -> Any:
    """Drive `acquire_steps` on the running event loop (store I/O in a thread, sleeps that do not block)."""
    import asyncio

    try:
        step = next(gen)
        while True:
            if callable(step):
                try:
                    value = await asyncio.to_thread(step)
                except BaseException as exc:
                    step = gen.throw(exc)
                    continue
                step = gen.send(value)
            else:
                await asyncio.sleep(step)
                step = next(gen)
    except StopIteration as stop:
        return stop.value


def release(got: Acquisition | None) -> None:
    """Give the slots of a `concurrency` acquisition back (a rate limit's are not given back: they decay)."""
    if got is None or got.lease_id is None:
        return
    st = keeper().drop(str(got.lease_id)) or store()
    try:
        if not st.release_concurrency_slots(got.lease_id):
            _log.warning("The concurrency lease %s had expired before its slots were released (its holder did not "
                         "renew it in time); its slots had been given back already.", got.lease_id)
    except Exception:
        _log.exception("Could not release concurrency lease %s; its slots come back when it expires.", got.lease_id)


class LeaseKeeper:
    """Renews the leases this process holds, each every third of its duration, on one daemon thread."""

    def __init__(self) -> None:
        self._leases: dict[str, tuple[Any, float, float]] = {}  # lease id -> (storage, duration, next renewal)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def hold(self, storage: Any, lease_id: str, duration: float) -> None:
        with self._cond:
            self._leases[lease_id] = (storage, duration, time.monotonic() + duration / 3)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="distributary-leases", daemon=True)
                self._thread.start()
            self._cond.notify()

    def drop(self, lease_id: str) -> Any:
        with self._cond:
            held = self._leases.pop(lease_id, None)
        return None if held is None else held[0]

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [(k, v) for k, v in self._leases.items() if v[2] <= now]
                if not due:
                    nxt = min((v[2] for v in self._leases.values()), default=now + 60.0)
                    self._cond.wait(max(0.01, nxt - now))
                    continue
                for k, (st, duration, _) in due:
                    self._leases[k] = (st, duration, now + duration / 3)
            for k, (st, duration, _) in due:
                try:
                    if not st.renew_concurrency_lease(k, duration):
                        _log.error("Concurrency lease %s was lost (it expired before it was renewed): its slots "
                                   "were given to others.", k)
                        self.drop(k)
                except Exception as exc:  # the store is away: try again at the next renewal
                    _log.warning("Could not renew concurrency lease %s: %s", k, exc)


_keeper: LeaseKeeper | None = None
_keeper_lock = threading.Lock()


def keeper() -> LeaseKeeper:
    global _keeper
    if _keeper is None:
        with _keeper_lock:
            if _keeper is None:
                _keeper = LeaseKeeper()
    return _keeper


# -- tag-based task-run limits ----------------------------------------------------------------------------------
TAG_CACHE_SECONDS = 2.0  # how long a process trusts its list of the tags that have limits
_tag_cache: tuple[float, frozenset[str]] | None = None


def limited_tags(tags: frozenset[str]) -> list[str]:
    """Those of `tags` that have a task-run limit (the list of limited tags is read at most every
    TAG_CACHE_SECONDS per process; with no run store database yet there are none)."""
    global _tag_cache
    now = time.monotonic()
    if _tag_cache is None or now - _tag_cache[0] > TAG_CACHE_SECONDS:
        try:
            _tag_cache = (now, frozenset(_read_limited_tags()))
        except Exception:
            _tag_cache = (now, frozenset())  # an unreachable store is asked again after the interval, not per task
            raise
    return sorted(tags & _tag_cache[1])


def _read_limited_tags() -> set[str]:
    import os

    from .urls import api_url, database_url, sqlite_path

    if not api_url():
        path = sqlite_path(database_url())
        if path is not None and not os.path.exists(path):
            return set()  # no database, so no limits: do not create one for a check
    return set(store().read_active_tag_limits())


def forget_tag_cache() -> None:
    global _tag_cache
    _tag_cache = None
