"""Connecting to a cluster address that accepts TCP but does not speak the cluster's protocol (a dashboard,
another web server, a socket that never answers) fails within the connect timeout with `ClusterConnectionError`
naming the address and the likely mistake, instead of hanging in the cluster client (issue 15 item 5)."""
from __future__ import annotations

import http.server
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from distributary import flow, task
from distributary.errors import ClusterConnectionError

CONNECT_TIMEOUT = 3.0


@pytest.fixture
def http_port() -> Iterator[int]:
    """A real HTTP/1 server on a free loopback port (what a dashboard is)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listening socket that accepts connections (the kernel completes them) and never sends a byte."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s.getsockname()[1]


@task
def one() -> int:
    return 1


def _connect_error(runner) -> tuple[ClusterConnectionError, float]:
    t0 = time.monotonic()
    with pytest.raises(ClusterConnectionError) as info:
        runner.start()
    return info.value, time.monotonic() - t0


def _wait_http(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_dask_at_the_schedulers_dashboard_port_names_the_mistake(dask_scheduler_only):
    from distributary.runners.dask import DaskTaskRunner

    _wait_http(dask_scheduler_only.http_port)  # the real scheduler's HTTP (dashboard) port
    address = f"tcp://127.0.0.1:{dask_scheduler_only.http_port}"
    err, elapsed = _connect_error(DaskTaskRunner(address=address, connect_timeout=CONNECT_TIMEOUT))
    msg = str(err)
    assert address in msg and "answers HTTP" in msg and "8786" in msg and "dashboard" in msg
    assert elapsed < CONNECT_TIMEOUT + 5


def _make(kind: str, port: int):
    if kind == "dask":
        from distributary.runners.dask import DaskTaskRunner

        address = f"tcp://127.0.0.1:{port}"
        return address, DaskTaskRunner(address=address, connect_timeout=CONNECT_TIMEOUT)
    from distributary.runners.ray import RayTaskRunner

    address = f"127.0.0.1:{port}"
    return address, RayTaskRunner(address=address, connect_timeout=CONNECT_TIMEOUT)


@pytest.mark.parametrize("kind", ["dask", "ray"])
@pytest.mark.parametrize("server", ["http_port", "silent_port"])
def test_an_address_that_does_not_speak_the_protocol_fails_within_the_connect_timeout(kind, server, request):
    address, runner = _make(kind, request.getfixturevalue(server))
    err, elapsed = _connect_error(runner)
    msg = str(err)
    assert address in msg and ("8786" if kind == "dask" else "6379") in msg
    assert ("answers HTTP" in msg) if server == "http_port" else ("did not answer" in msg)
    assert elapsed < CONNECT_TIMEOUT + 5


def test_a_flow_on_a_silent_dask_address_ends_failed_naming_it(silent_port):
    from distributary.runners.dask import DaskTaskRunner

    address = f"tcp://127.0.0.1:{silent_port}"

    @flow(task_runner=DaskTaskRunner(address=address, connect_timeout=CONNECT_TIMEOUT))
    def f():
        return one()

    state = f(return_state=True)
    assert state.is_failed() and address in state.message and "ClusterConnectionError" in state.message


def test_dask_at_a_real_scheduler_still_connects(dask_scheduler_only):
    from distributary.runners.dask import DaskTaskRunner

    runner = DaskTaskRunner(address=dask_scheduler_only.address, connect_timeout=CONNECT_TIMEOUT)
    runner.start()
    try:
        assert runner.client.scheduler.address == dask_scheduler_only.address
    finally:
        runner.shutdown()
