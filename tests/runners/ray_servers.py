"""One Ray instance per test session, in the test process: `ray.init` with 2 CPUs, a custom resource ("gadget")
for the remote_options tests, no dashboard, a 512 MiB object store, on 127.0.0.1 (tests/README.md, P9).
Runners join it by address. A test that kills part of a cluster starts its own `ray start --head` (`RayHead`) and
stops it by process group. Never `ray stop` (it ends every Ray on the machine).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

# Before Ray starts: no token file in ~/.ray, no usage stats, bind 127.0.0.1 (tests/README.md, P9).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

RAY_CPUS = 2
GADGETS = 2


@pytest.fixture(scope="session")
def ray_instance() -> Iterator[str]:
    """The GCS address of the session's Ray instance."""
    import ray

    if ray.is_initialized():
        pytest.fail("Ray was already initialized in the test process before the session fixture ran.",
                    pytrace=False)
    ray.init(num_cpus=RAY_CPUS, resources={"gadget": GADGETS}, include_dashboard=False,
             object_store_memory=512 * 2**20, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def ray_runner(ray_instance: str):
    from distributary.runners.ray import RayTaskRunner

    return RayTaskRunner(address=ray_instance)


class RayHead:
    """A `ray start --head --block` cluster of this test's own, in its own session and temp dir, every port free
    and on 127.0.0.1 (P9, P12, P13). `gcs_pid()` finds its GCS process among the group's processes; `stop()`
    ends the group (never `ray stop`)."""

    def __init__(self, workdir: Path, num_cpus: int = 2):
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Unix socket paths must stay under ~107 bytes: a short temp dir, not the test's tmp_path.
        self.temp_dir = tempfile.mkdtemp(prefix="dray-", dir="/tmp")
        ports = {"--node-manager-port": _free_port(), "--object-manager-port": _free_port(),
                 "--ray-client-server-port": _free_port(), "--dashboard-agent-listen-port": _free_port(),
                 "--dashboard-agent-grpc-port": _free_port(), "--runtime-env-agent-port": _free_port(),
                 "--metrics-export-port": _free_port()}
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        self.log = open(workdir / "ray-head.log", "wb")  # noqa: SIM115  closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--port", str(self.port),
             "--node-ip-address", "127.0.0.1", "--num-cpus", str(num_cpus), "--include-dashboard", "false",
             "--object-store-memory", str(128 * 2**20), "--disable-usage-stats", "--temp-dir", self.temp_dir,
             *(str(a) for kv in ports.items() for a in kv)],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}; see {self.log.name}")
            if self.gcs_pid() is not None and _listening(self.port) and self._raylet_up():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Ray head was not up after {timeout} s; see {self.log.name}")
            time.sleep(0.2)

    def _group(self) -> list[psutil.Process]:
        out = []
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(p.pid) == self.proc.pid:
                    out.append(p)
            except (ProcessLookupError, PermissionError):
                continue
        return out

    def _find(self, name: str) -> int | None:
        for p in self._group():
            try:
                if any(name in part for part in p.cmdline()[:1]):
                    return p.pid
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return None

    def gcs_pid(self) -> int | None:
        """The pid of the head's gcs_server process (a process of the group this fixture started)."""
        return self._find("gcs_server")

    def _raylet_up(self) -> bool:
        return self._find("raylet") is not None

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        # Ray's processes stay in the group after `ray start` itself exits: SIGKILL what is left of it.
        for p in self._group():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0
