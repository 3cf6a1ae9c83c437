"""The `runner` fixture: one fresh, unstarted task runner per test, for every runner kind. The runner contract
suite (test_contract.py) runs once per kind. Cluster-backed kinds reuse one cluster per session
(dask_processes and ray_instance, from tests/conftest.py)."""
from __future__ import annotations

import logging

import pytest
from dask_servers import dask_runner, dask_scheduler_only  # noqa: E402,F401
from ray_servers import ray_runner  # noqa: E402,F401

from distributary.runners.process import ProcessPoolTaskRunner
from distributary.runners.thread import ThreadPoolTaskRunner

RUNNER_KINDS = ["threads", "processes"]
RUNNER_KINDS.append("dask")
RUNNER_KINDS.append("ray")


@pytest.fixture(params=RUNNER_KINDS)
def runner(request):
    kind = request.param
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=4)
    if kind == "processes":
        return ProcessPoolTaskRunner(max_workers=2)
    return request.getfixturevalue(f"{kind}_runner")


@pytest.fixture
def no_run_store(monkeypatch):
    """The run store off for one test (no sink registered): the recorder is the only run-event sink. Ask for the
    session's clusters before this: processes started while it is on inherit the setting (and the flow runs
    they start later would not record themselves)."""
    from distributary import runstore

    runstore.stop_sink()
    monkeypatch.setenv("DISTRIBUTARY_RUNSTORE_ENABLED", "false")
    yield
    runstore.stop_sink()


@pytest.fixture
def warnings_logged():
    """The WARNING+ records of the `distributary` loggers during the test (they do not propagate to root)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("distributary").addHandler(handler)
    try:
        yield records
    finally:
        logging.getLogger("distributary").removeHandler(handler)
