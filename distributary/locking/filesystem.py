"""`FileSystemLockManager`: locks as files in a directory, shared by the processes of one machine (or any that
share the directory). A lock file is created exclusively (`O_CREAT | O_EXCL`), so only one holder wins; it
records the holder and when the hold expires, and an expired lock is taken over."""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path


class FileSystemLockManager:
    """Locks in `lock_files_directory` (created if missing)."""

    def __init__(self, lock_files_directory: str | os.PathLike[str]):
        self.lock_files_directory = Path(lock_files_directory).expanduser()
        self.lock_files_directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        safe = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.lock_files_directory / f"{safe}.lock"

    def _read(self, key: str) -> dict | None:
        path = self._path(key)
        try:
            info = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"holder": None, "expires": 0}  # unreadable: treat as an expired lock
        expires = info.get("expires")
        if expires is not None and expires <= time.time():
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            return None
        return info

    def _try_create(self, key: str, holder: str, hold_timeout: float | None) -> bool:
        data = json.dumps({"key": key, "holder": holder,
                           "expires": None if hold_timeout is None else time.time() + hold_timeout})
        try:
            fd = os.open(self._path(key), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
        return True

    def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                     hold_timeout: float | None = None) -> bool:
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        delay = 0.01
        while True:
            info = self._read(key)
            if info is not None and info.get("holder") == holder:
                self._path(key).unlink(missing_ok=True)  # re-take: renew the hold
                info = None
            if info is None and self._try_create(key, holder, hold_timeout):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def release_lock(self, key: str, holder: str) -> None:
        info = self._read(key)
        if info is None or info.get("holder") != holder:
            raise ValueError(f"No lock on {key!r} is held by {holder!r}; it cannot be released.")
        self._path(key).unlink(missing_ok=True)

    def is_locked(self, key: str) -> bool:
        return self._read(key) is not None

    def is_lock_holder(self, key: str, holder: str) -> bool:
        info = self._read(key)
        return info is not None and info.get("holder") == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._read(key) is not None:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True
