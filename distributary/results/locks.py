"""Leases: a lock on a result key, kept as a small file in the store so that processes on any machine that see
the store respect it. Used by SERIALIZABLE isolation so that concurrent runs with one cache key compute it once.

A lease is the file `{base}/.locks/{key}.lock`, created only if absent (local: hard link of a complete temporary
file; S3: `If-None-Match: *`; GCS: `ifGenerationMatch=0`; Azure: `If-None-Match: *`; memory://: a process lock).
Its JSON body names the holder (host, boot id, pid and the process's start time) and the wall-clock time it
expires. The holder renews it from a background thread every ttl/3 seconds, so a long computation keeps it.

Waiters poll with backoff and log at INFO after `WAIT_LOG_AFTER` seconds (then every `WAIT_LOG_EVERY`), naming
the key and the holder. A waiter takes a lease over when it has expired, or at once when the holder ran on this
host (same host name and boot id) in the same pid namespace and its process is provably gone (no such pid in
/proc, or a pid reused by a process that started at another time). Taking over re-reads the lease, deletes it
only if unchanged, then creates its own.

Renewal is conditional: the holder renews only if the lease still names it (and reads it back after writing);
otherwise it marks itself `lost` and stops. Before `ResultStore.write` of a key, a lease held on that key by the
writing thread is checked: if it was lost and another run has written the key since the lease was taken, the
write is skipped with a warning instead of overwriting the newer result.

Known race (accepted): two waiters can both find the same expired lease; if one deletes it after the other has
already replaced it, both believe they hold it. The window is one store round trip, and only opens when a holder
died; the one that loses finds out at its next renewal or before it writes. Expiry uses wall-clock time, so
machines sharing a store need clocks that agree to well within the ttl.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from ..errors import LockTimeoutError, ResultStoreError

if TYPE_CHECKING:
    from .store import ResultStore

log = logging.getLogger("distributary.results")

_MIN_POLL = 0.02
_MAX_POLL = 0.5
WAIT_LOG_AFTER = 5.0
"""Seconds a waiter waits before it logs (at INFO) who holds the lease it waits for."""
WAIT_LOG_EVERY = 30.0


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _pid_namespace() -> str | None:
    """This process's pid namespace ("pid:[4026531836]"); a pid means a process only within its namespace."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


_HOST = socket.gethostname()
_BOOT_ID = _read_text("/proc/sys/kernel/random/boot_id")
_PID_NS = _pid_namespace()


def process_start_time(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, from /proc/<pid>/stat), or None if there is no such
    process (or no /proc on this system)."""
    text = _read_text(f"/proc/{pid}/stat")
    if text is None:
        return None
    try:
        return int(text[text.rindex(")") + 2:].split()[19])  # field 22; the name in parentheses may hold spaces
    except (ValueError, IndexError):
        return None


def holder_is_dead(body: dict[str, Any]) -> bool:
    """True only when the lease's holder ran on this host (same name and boot id) in this pid namespace (a
    container on the same kernel has its own pids) and its process is gone. A lease without a pid namespace
    (written by an earlier version) is never provably dead: it is taken over when it expires."""
    if _BOOT_ID is None or body.get("host") != _HOST or body.get("boot") != _BOOT_ID:
        return False
    if _PID_NS is None or body.get("pidns") != _PID_NS:
        return False
    pid, started = body.get("pid"), body.get("start")
    if not isinstance(pid, int) or not isinstance(started, int):
        return False
    now = process_start_time(pid)
    return now is None or now != started


class Lease:
    """A lease on one key of a store (see the module docstring). Use it as a context manager, or call
    `acquire()` and `release()`. Attributes: `key`, `holder`, `ttl`, `expires` (epoch seconds), `lost`."""

    def __init__(self, store: "ResultStore", key: str, ttl: float, timeout: float | None = None) -> None:
        if ttl <= 0:
            raise ValueError(f"A lease ttl must be positive, got {ttl}.")
        store.lock_path(key)  # validates the key
        self.store = store
        self.key = key
        self.ttl = ttl
        self.timeout = timeout
        self.holder = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.expires = 0.0
        self.acquired_at = 0.0  # wall-clock time the lease became ours
        self.lost = False
        self.held = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> "Lease":
        self.acquire()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "lost" if self.lost else "not held"
        return f"<Lease {self.key!r} in {self.store.url} {state}>"

    # -- acquiring ------------------------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Wait until the lease is ours (or raise `LockTimeoutError` after `timeout` seconds)."""
        if self.held:
            raise RuntimeError(f"{self!r} is already held; a Lease is not re-entrant.")
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        delay = _MIN_POLL
        unreadable_since: float | None = None
        started = time.monotonic()
        next_log = started + WAIT_LOG_AFTER
        while True:
            if self._try_create():
                break
            current = self.store._lock_read(self.key)
            if current is None:
                continue  # released between our attempt and the read: try again at once
            body = _parse(current)
            if body is None:
                # Being written by a store without atomic create, or garbage: held until it stays so for a ttl.
                unreadable_since = unreadable_since or time.monotonic()
                expired = time.monotonic() - unreadable_since > self.ttl
            else:
                unreadable_since = None
                expired = time.time() > body["expires"]
                if not expired and holder_is_dead(body):
                    if self._take_over(current, f"its holder {body['holder']} (pid {body['pid']} on this host) "
                                                "is gone"):
                        continue
                    continue  # changed meanwhile: look again at once
            if expired and self._take_over(current, "it expired"):
                continue
            if time.monotonic() >= next_log:
                log.info("Waiting %.0f s so far for the lease on %r in %s: held by %s%s.", time.monotonic() - started,
                         self.key, self.store.url, body["holder"] if body else "an unknown holder",
                         f" until {time.ctime(body['expires'])}" if body else "")
                next_log += WAIT_LOG_EVERY
            if deadline is not None and time.monotonic() >= deadline:
                holder = body["holder"] if body else "an unknown holder"
                until = f" until {time.ctime(body['expires'])}" if body else ""
                raise LockTimeoutError(
                    f"Could not acquire the lease on {self.key!r} in {self.store.url} within {self.timeout} s: it "
                    f"is held by {holder}{until}. Wait longer (a larger timeout), or if that holder is gone, its "
                    f"lease expires by itself (or delete {self.store.lock_url(self.key)}).")
            pause = delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic()))
            time.sleep(pause)
            delay = min(delay * 1.6, _MAX_POLL, self.ttl / 4)
        self.held = True
        self.lost = False
        self.acquired_at = time.time()
        self.store._leases[(self.key, threading.get_ident())] = self
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name=f"distributary-lease-{self.key[:16]}",
                                         daemon=True)
        self._renewer.start()

    def _body(self) -> bytes:
        self.expires = time.time() + self.ttl
        return json.dumps({"holder": self.holder, "key": self.key, "expires": self.expires, "ttl": self.ttl,
                           "host": _HOST, "boot": _BOOT_ID, "pidns": _PID_NS, "pid": os.getpid(),
                           "start": _START},
                          separators=(",", ":")).encode()

    def _try_create(self) -> bool:
        return self.store._lock_create(self.key, self._body())

    def _take_over(self, seen: bytes, why: str) -> bool:
        """Delete an expired, unreadable or dead holder's lease if it is still the one we saw; True if deleted."""
        if self.store._lock_read(self.key) != seen:
            return False
        log.info("Taking over the lease on %r in %s held by %s: %s.", self.key, self.store.url,
                 (_parse(seen) or {}).get("holder", "an unreadable body"), why)
        self.store._lock_delete(self.key)
        return True

    # -- holding --------------------------------------------------------------------------------------------------
    def _renew_loop(self) -> None:
        interval = self.ttl / 3
        while not self._stop.wait(interval):
            try:
                if not self.renew():
                    return
            except ResultStoreError as exc:
                # Keep trying: the lease is still ours until it expires.
                log.warning("Could not renew the lease on %r in %s: %s", self.key, self.store.url, exc)

    def renew(self) -> bool:
        """Push the expiry `ttl` seconds ahead, only if the lease still names us (checked before and after the
        write); False (and `lost`, with a warning) if someone else holds it now."""
        if not self.still_held():
            return False
        self.store._lock_overwrite(self.key, self._body())
        return self.still_held()

    def still_held(self) -> bool:
        """Whether the lease in the store still names this holder (one small read). Marks it `lost` if not."""
        if self.lost:
            return False
        body = _parse(self.store._lock_read(self.key) or b"")
        if body is not None and body["holder"] == self.holder:
            return True
        self.lost = True
        log.warning("The lease on %r in %s was lost: %s holds it now. Another run may be computing the same key; "
                    "use a larger lease ttl for long computations.", self.key, self.store.url,
                    body["holder"] if body else "no one")
        return False

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours."""
        if not self.held:
            return
        self.held = False
        if self.store._leases.get((self.key, threading.get_ident())) is self:
            del self.store._leases[(self.key, threading.get_ident())]
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join()
        self._renewer = None
        try:
            body = _parse(self.store._lock_read(self.key) or b"")
            if body is not None and body["holder"] == self.holder:
                self.store._lock_delete(self.key)
                return
        except ResultStoreError as exc:
            # Not worth failing the caller's work over: the lease expires by itself after its ttl.
            log.warning("Could not release the lease on %r in %s (it expires within %.0f s): %s", self.key,
                        self.store.url, self.ttl, exc)
            return
        if not self.lost:
            self.lost = True
            log.warning("The lease on %r in %s had been taken over before it was released.", self.key,
                        self.store.url)


_START = process_start_time(os.getpid())


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
        if isinstance(body, dict) and isinstance(body.get("holder"), str):
            body["expires"] = float(body["expires"])
            return body
    except (ValueError, TypeError, KeyError):
        return None  # unreadable: the caller decides what that means
    return None
