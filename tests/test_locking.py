"""Lock managers (`distributary.locking`): one holder at a time, across threads and across processes."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from distributary.locking import FileSystemLockManager, LockManager, MemoryLockManager


@pytest.fixture(params=["memory", "filesystem"])
def manager(request, tmp_path):
    return MemoryLockManager() if request.param == "memory" else FileSystemLockManager(tmp_path / "locks")


def test_one_holder_at_a_time(manager):
    assert isinstance(manager, LockManager)
    assert manager.acquire_lock("k", "a")
    assert manager.is_locked("k") and manager.is_lock_holder("k", "a") and not manager.is_lock_holder("k", "b")
    assert not manager.acquire_lock("k", "b", acquire_timeout=0.1)
    with pytest.raises(ValueError, match="held by 'b'"):
        manager.release_lock("k", "b")
    manager.release_lock("k", "a")
    assert not manager.is_locked("k")
    assert manager.acquire_lock("k", "b", acquire_timeout=0.1)


def test_an_expired_hold_is_taken_over(manager):
    assert manager.acquire_lock("k", "a", hold_timeout=0.2)
    t0 = time.monotonic()
    assert manager.acquire_lock("k", "b", acquire_timeout=5)
    assert time.monotonic() - t0 < 2
    assert manager.is_lock_holder("k", "b")


def test_waiters_get_the_lock_when_it_is_released(manager):
    manager.acquire_lock("k", "a")
    got: list[str] = []

    def waiter() -> None:
        if manager.acquire_lock("k", "b", acquire_timeout=10):
            got.append("b")

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    assert got == [] and manager.wait_for_lock("k", timeout=0.05) is False
    manager.release_lock("k", "a")
    t.join(10)
    assert got == ["b"]


def test_filesystem_locks_exclude_other_processes(tmp_path):
    locks = tmp_path / "locks"
    code = ("import sys,time; from distributary.locking import FileSystemLockManager as M; m=M(sys.argv[1]); "
            "assert m.acquire_lock('shared', 'child'); print('held', flush=True); time.sleep(1.5); "
            "m.release_lock('shared', 'child')")
    child = subprocess.Popen([sys.executable, "-c", code, str(locks)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    mgr = FileSystemLockManager(locks)
    assert not mgr.acquire_lock("shared", "parent", acquire_timeout=0.3)
    assert mgr.acquire_lock("shared", "parent", acquire_timeout=20)
    assert child.wait(20) == 0
