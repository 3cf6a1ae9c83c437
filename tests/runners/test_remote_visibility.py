"""Crashes on the cluster runners are never silent (issue 15 item 13): a worker death is logged at ERROR once per
crashed run naming the dead worker, and a lost Dask scheduler once for all its runs, saying so. Real `dask
scheduler` / `dask worker` processes and Ray worker processes, killed with SIGKILL."""
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


def _note_and_sleep(path: str, worker: str, seconds: float) -> str:
    Path(path + ".tmp").write_text(f"{os.getpid()} {worker}")
    os.replace(path + ".tmp", path)
    time.sleep(seconds)
    return "finished"


@task
def note_worker_and_sleep(path: str, seconds: float) -> str:
    from distributed import get_worker

    return _note_and_sleep(path, get_worker().address, seconds)


def _wait_file(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.05)
    return path.read_text()


def _errors(records) -> list[str]:
    return [r.getMessage() for r in records if r.levelno >= logging.ERROR]


def _kill_the_worker_of_one_run(runner, noting_task, marker: Path, warnings_logged) -> None:
    """Run one `noting_task` on `runner`, SIGKILL its worker process; the run ends Crashed and one ERROR line
    names the worker the task noted."""
    @flow(task_runner=runner)
    def f():
        fut = noting_task.submit(str(marker), 60)
        pid, where = _wait_file(marker).split()
        os.kill(int(pid), signal.SIGKILL)
        fut.wait(60)
        return fut.state, where

    state, where = f()
    assert state.is_crashed() and where in state.message, (where, state.message)
    crash_lines = [m for m in _errors(warnings_logged) if f"{noting_task.name}-0" in m and "died" in m]
    assert len(crash_lines) == 1 and where in crash_lines[0], crash_lines


def test_a_killed_dask_worker_is_named_in_one_error_line(dask_processes, tmp_path, warnings_logged):
    from distributary.runners.dask import DaskTaskRunner

    try:
        _kill_the_worker_of_one_run(DaskTaskRunner(address=dask_processes.address), note_worker_and_sleep,
                                    tmp_path / "where", warnings_logged)
    finally:
        dask_processes.wait_for_workers()


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


@task
def note_ray_worker_and_sleep(path: str, seconds: float) -> str:
    import ray

    return _note_and_sleep(path, f"ray:{ray.util.get_node_ip_address()}:{os.getpid()}", seconds)


def test_a_killed_ray_worker_is_named_in_one_error_line(ray_runner, tmp_path, warnings_logged):
    _kill_the_worker_of_one_run(ray_runner, note_ray_worker_and_sleep, tmp_path / "where", warnings_logged)
