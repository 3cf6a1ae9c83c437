"""A Dask scheduler and two single-threaded workers as separate processes (`dask scheduler` / `dask worker`),
started once per session on free 127.0.0.1 ports and stopped by process group (tests/README.md, §3, P10, P12, P13).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

N_WORKERS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # the group: a worker CLI's nannies and their worker processes too
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class DaskProcesses:
    """`dask scheduler` + `dask worker --nworkers 2 --nthreads 1`, each in its own session (`n_workers=0`: the
    scheduler alone). The scheduler's HTTP server (its dashboard port) listens on `http_port`."""

    def __init__(self, workdir: Path, n_workers: int = N_WORKERS):
        port = _free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        self.http_port = _free_port()
        sched_file = workdir / "scheduler.json"
        dask_cli = [sys.executable, "-m", "dask"]
        self.logs = [open(workdir / "scheduler.log", "wb"), open(workdir / "workers.log", "wb")]  # noqa: SIM115  closed in stop()
        self.procs: list[subprocess.Popen] = []
        try:
            self.procs.append(subprocess.Popen(
                [*dask_cli, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--dashboard-address",
                 f"127.0.0.1:{self.http_port}", "--scheduler-file", str(sched_file)],
                stdout=self.logs[0], stderr=subprocess.STDOUT, start_new_session=True))
            self._wait_for(lambda: sched_file.exists() and sched_file.stat().st_size > 0, "the scheduler file")
            assert json.loads(sched_file.read_text())["address"] == self.address
            if not n_workers:
                return
            self.procs.append(subprocess.Popen(
                [*dask_cli, "worker", self.address, "--host", "127.0.0.1", "--nworkers", str(n_workers),
                 "--nthreads", "1", "--dashboard-address", "127.0.0.1:0", "--memory-limit", "2GiB"],
                stdout=self.logs[1], stderr=subprocess.STDOUT, start_new_session=True))
            self.wait_for_workers(n_workers)
        except BaseException:
            self.stop()
            raise

    def _wait_for(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[2:4]} exited with {p.returncode} while waiting for {what}; "
                                       f"see {self.logs[0].name} / {self.logs[1].name}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} after {timeout} s")
            time.sleep(0.1)

    def wait_for_workers(self, n: int = N_WORKERS, timeout: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(n, timeout=timeout)

    def wait_idle(self, timeout: float = 60) -> None:
        """Until no worker runs a task (a cancelled task that already ran finishes in its worker thread)."""
        from distributed import Client

        deadline = time.monotonic() + timeout
        with Client(self.address, timeout=30, set_as_default=False) as client:
            while any(client.processing().values()) or any(
                    client.run(lambda dask_worker: len(dask_worker.state.executing)).values()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Dask workers still busy after {timeout} s")
                time.sleep(0.5)

    def worker_pids(self) -> dict[str, int]:
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            return client.run(os.getpid)

    def stop(self) -> None:
        for p in reversed(self.procs):
            _stop(p)
        for log in self.logs:
            log.close()


@pytest.fixture(scope="session")
def dask_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskProcesses]:
    cluster = DaskProcesses(tmp_path_factory.mktemp("dask"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def dask_scheduler_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskProcesses]:
    """A Dask scheduler with no workers (and its HTTP port)."""
    cluster = DaskProcesses(tmp_path_factory.mktemp("dask-alone"), n_workers=0)
    yield cluster
    cluster.stop()


@pytest.fixture
def dask_runner(dask_processes: DaskProcesses):
    from distributary.runners.dask import DaskTaskRunner

    return DaskTaskRunner(address=dask_processes.address)
