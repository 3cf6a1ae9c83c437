"""Lock managers at Prefect 3's `prefect.locking` paths: the `LockManager` interface, `MemoryLockManager`
(threads of one process) and `FileSystemLockManager` (processes sharing a directory).

    from distributary.cache_policies import INPUTS
    from distributary.locking.filesystem import FileSystemLockManager
    policy = INPUTS.configure(isolation_level="SERIALIZABLE", lock_manager=FileSystemLockManager("/tmp/locks"))

Without a lock manager, SERIALIZABLE uses the result store's own leases (`ResultStore.lease`).
"""
from __future__ import annotations

from .filesystem import FileSystemLockManager
from .memory import MemoryLockManager
from .protocol import LockManager

__all__ = ["LockManager", "MemoryLockManager", "FileSystemLockManager"]
