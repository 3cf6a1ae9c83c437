"""Crashes on the cluster runners are never silent (issue 15 item 13): a worker death is logged at ERROR once per
crashed run naming the dead worker, and a lost Dask scheduler once for all its runs, saying so. Real `dask
scheduler` / `dask worker` processes, killed with SIGKILL."""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest
from dask_servers import DaskProcesses

from distributary import flow, task

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@task
def note_worker_and_sleep(path: str, seconds: float) -> str:
    from distributed import get_worker

    Path(path + ".tmp").write_text(f"{os.getpid()} {get_worker().address}")
    os.replace(path + ".tmp", path)
    time.sleep(seconds)
    return "finished"


def _wait_file(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.05)
    return path.read_text()


def _errors(records) -> list[str]:
    return [r.getMessage() for r in records if r.levelno >= logging.ERROR]


def test_a_killed_dask_worker_is_named_in_one_error_line(dask_processes, tmp_path, warnings_logged):
    from distributary.runners.dask import DaskTaskRunner

    marker = tmp_path / "where"

    @flow(task_runner=DaskTaskRunner(address=dask_processes.address))
    def f():
        fut = note_worker_and_sleep.submit(str(marker), 60)
        pid, address = _wait_file(marker).split()
        os.kill(int(pid), signal.SIGKILL)
        fut.wait(60)
        return fut.state, address

    try:
        state, address = f()
    finally:
        dask_processes.wait_for_workers()
    assert state.is_crashed() and address in state.message
    crash_lines = [m for m in _errors(warnings_logged) if "note_worker_and_sleep-0" in m and "died" in m]
    assert len(crash_lines) == 1 and address in crash_lines[0]


@pytest.fixture
def doomed_cluster(tmp_path) -> Iterator[DaskProcesses]:
    """A scheduler and one worker of this test's own: the test kills the scheduler."""
    workdir = tmp_path / "doomed"
    workdir.mkdir()
    cluster = DaskProcesses(workdir, n_workers=1)
    yield cluster
    cluster.stop()


def test_a_lost_dask_scheduler_is_logged_once_saying_so(doomed_cluster, tmp_path, warnings_logged):
    from distributary.runners.dask import DaskTaskRunner

    marker = tmp_path / "where"

    @flow(task_runner=DaskTaskRunner(address=doomed_cluster.address, connect_timeout=3))
    def f():
        futs = note_worker_and_sleep.map([str(marker)] * 6, [60] * 6)
        _wait_file(marker)
        os.killpg(doomed_cluster.procs[0].pid, signal.SIGKILL)  # the scheduler
        futs.wait(60)
        return [fu.state for fu in futs]

    t0 = time.monotonic()
    states = f()
    assert time.monotonic() - t0 < 60
    assert all(s.is_crashed() and "the Dask scheduler was lost" in s.message for s in states), states
    lines = [m for m in _errors(warnings_logged) if "the Dask scheduler was lost" in m]
    assert len(lines) == 1 and doomed_cluster.address in lines[0]
