"""Result-store errors are failures like any other (issue 15 item 11): task retries apply to a store that does not
answer at lookup, a failed write is retried without running the function again, and a missing bucket fails every
run before anything computes, naming the bucket. Against moto's real S3 server, reached through a TCP proxy the
tests switch off and on (a store endpoint that goes down and comes back)."""
from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator

import fsspec
import pytest

from distributary import flow, task
from distributary.cache_policies import INPUTS
from distributary.results import resolve_store

from servers import Endpoint

FAST_S3 = {"config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1, "read_timeout": 2}}


class Proxy:
    """A TCP proxy on a free loopback port to `target`; while `up` is False it drops every connection at once
    (the store's endpoint is down)."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.up = True
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while self.up and (data := src.recv(65536)):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@pytest.fixture
def s3_via_proxy(moto_s3: Endpoint) -> Iterator[tuple[Proxy, str, dict]]:
    host, port = moto_s3.url.rsplit("//", 1)[1].split(":")
    proxy = Proxy((host, int(port)))
    bucket = f"r-{uuid.uuid4().hex[:16]}"
    fsspec.filesystem("s3", skip_instance_cache=True, **moto_s3.storage_options).mkdir(bucket)
    options = {**moto_s3.storage_options, **FAST_S3,
               "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{proxy.port}"}}
    yield proxy, f"s3://{bucket}/results-{uuid.uuid4().hex[:6]}", options
    proxy.close()


def _double(calls: list, store, proxy: Proxy | None = None, **options):
    """A task that counts its calls; with `proxy`, the endpoint goes down while it runs (its write fails)."""
    def double(x: int) -> int:
        calls.append(x)
        if proxy is not None:
            proxy.up = False
        return 2 * x

    return task(result_storage=store, retries=2, retry_delay_seconds=0, **options)(double)


def _run_one(tsk):
    @flow
    def f():
        fut = tsk.submit(21)
        fut.wait()
        return fut.state, fut.task_run

    return f()


def _back_up(proxy: Proxy):
    def condition(tsk, run, state) -> bool:
        proxy.up = True  # the endpoint comes back before the retry
        return True

    return condition


def test_a_store_down_at_lookup_is_retried_and_the_run_completes_when_it_is_back(s3_via_proxy):
    proxy, url, options = s3_via_proxy
    calls: list[int] = []
    proxy.up = False
    state, run = _run_one(_double(calls, resolve_store(url, options), cache_policy=INPUTS,
                                  retry_condition_fn=_back_up(proxy)))
    assert state.is_completed() and state.result() == 42
    assert calls == [21]  # computed once, after the store answered
    names = [s.name for s in run.state_history]
    assert names[:2] == ["Pending", "AwaitingRetry"] and names[-1] == "Completed"
    assert resolve_store(url, options).exists(run.cache_key)


def test_a_store_that_stays_down_fails_after_the_retries_without_computing(s3_via_proxy):
    proxy, url, options = s3_via_proxy
    calls: list[int] = []
    proxy.up = False
    state, run = _run_one(_double(calls, resolve_store(url, options), cache_policy=INPUTS))
    bucket = url.split("//")[1].split("/")[0]
    assert state.is_failed() and "ResultStoreError" in state.message and bucket in state.message
    assert calls == []
    assert [s.name for s in run.state_history].count("AwaitingRetry") == 2


def test_a_failed_write_is_retried_without_running_the_function_again(s3_via_proxy):
    proxy, url, options = s3_via_proxy
    calls: list[int] = []
    state, run = _run_one(_double(calls, resolve_store(url, options), proxy, persist_result=True,
                                  retry_condition_fn=_back_up(proxy)))
    assert state.is_completed() and state.result() == 42 and state.result_ref is not None
    assert calls == [21]  # the retry wrote the value computed by the first attempt
    assert run.run_count == 2
    assert state.result_ref.load() == 42


def test_a_missing_bucket_fails_every_run_before_any_computes_naming_the_bucket(moto_s3):
    bucket = f"no-such-bucket-{uuid.uuid4().hex[:8]}"
    calls: list[int] = []
    double = _double(calls, resolve_store(f"s3://{bucket}/results", {**moto_s3.storage_options, **FAST_S3}),
                     cache_policy=INPUTS)

    @flow
    def f():
        futs = double.map(range(20))
        futs.wait()
        return [fu.state for fu in futs]

    states = f()
    assert calls == []  # nothing computed only to be thrown away
    assert all(s.is_failed() and bucket in s.message and "does not exist" in s.message for s in states)
