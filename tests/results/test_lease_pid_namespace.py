"""A lease holder on this host but in another pid namespace (a container on the same kernel) is not provably
dead because its pid means nothing here: the lease holds until it expires or is released. The holder is a real
process in a new pid namespace (`unshare --pid`), where its pid is 1, a pid that exists here too."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from distributary.errors import LockTimeoutError
from distributary.results import resolve_store
from distributary.results.locks import holder_is_dead

WORKER = Path(__file__).with_name("store_worker.py")


def test_a_holder_in_another_pid_namespace_is_not_taken_over(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    assert unshare, "this test needs util-linux's unshare (apt-get install util-linux)"
    url = str(tmp_path / "store")
    proc = subprocess.Popen([unshare, "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child",
                             sys.executable, str(WORKER), "hold", url, "k"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        line = proc.stdout.readline().strip()
        assert line == "holding", proc.communicate(timeout=10)
        store = resolve_store(url)
        body = json.loads(store._lock_read("k"))
        assert body["pid"] == 1 and body["pidns"] != Path("/proc/self/ns/pid").readlink().as_posix()
        assert not holder_is_dead(body)  # pid 1 exists here and started at another time: not evidence
        with pytest.raises(LockTimeoutError):
            store.lease("k", ttl=5, timeout=1.5).acquire()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # unshare and the holder it forked (pid 1 of its namespace)
        proc.communicate()
