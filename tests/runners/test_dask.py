"""DaskTaskRunner beyond the runner contract: cluster lifecycle, packing, the data path, worker telemetry and
faults. Real components only: `dask scheduler`/`dask worker` processes (dask_servers.py) or LocalClusters."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import cloudpickle
import pytest

from distributary import flow, get_run_logger, task
from distributary.context import flow_run_ctx
from distributary.errors import ClusterConnectionError, ConfigurationError, SerializationError
from distributary.runners.dask import DaskTaskRunner, get_dask_client

cloudpickle.register_pickle_by_value(sys.modules[__name__])
LIGHT_LOCAL = {"n_workers": 1, "threads_per_worker": 2}


def bump(path: str) -> int:
    with open(path, "a") as f:
        f.write("x")
    return os.path.getsize(path)


def calls(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


def current_runner() -> DaskTaskRunner:
    return flow_run_ctx.get().task_runner


@task
def inc(x: int) -> int:
    return x + 1


@task
def pid(_: int = 0) -> int:
    return os.getpid()


@task
def ident(x):
    return x


@task
def make_lock():
    return threading.Lock()


@task
def kill_my_worker_first(counter: str) -> str:
    if bump(counter) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


@task
def kill_my_worker(counter: str) -> str:
    bump(counter)
    os.kill(os.getpid(), signal.SIGKILL)
    return "unreachable"


@task
def kill_at(counter_dir: str, x: int, bad: int, always: bool) -> int:
    if x == bad and (bump(os.path.join(counter_dir, "bad")) == 1 or always):
        os.kill(os.getpid(), signal.SIGKILL)
    return x


@task
def sleeper(pid_file: str, seconds: float) -> str:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    return "slept"


@task(log_prints=True)
def chatty(tag: str, linger: float) -> str:
    get_run_logger().info("logged %s from pid %d", tag, os.getpid())
    print(f"printed {tag}")
    time.sleep(linger)
    return tag


@task
def uses_client(n: int) -> tuple:
    with get_dask_client() as client:
        return client.submit(sum, list(range(n))).result(), client.scheduler.address


class CountingDaskRunner(DaskTaskRunner):
    """Counts what crosses the driver boundary (our own hooks; the cluster is real)."""

    def start(self) -> None:
        self.fetches: list[int] = []
        self.task_puts = 0
        self.batches: list[int] = []
        super().start()

    def _backend_put_task(self, payload: bytes, digest: str):
        self.task_puts += 1
        return super()._backend_put_task(payload, digest)

    def _backend_submit(self, batch, task_ref, payload, upstream_refs):
        self.batches.append(len(batch.runs))
        self.peak_in_flight = max(getattr(self, "peak_in_flight", 0), self._pump.in_flight)
        return super()._backend_submit(batch, task_ref, payload, upstream_refs)

    def _backend_fetch(self, batches):
        self.fetches.append(len(batches))
        return super()._backend_fetch(batches)


# -- lifecycle --------------------------------------------------------------------------------------------------
def test_default_starts_a_local_cluster_per_flow_run_and_closes_it():
    seen = []

    @flow(task_runner=DaskTaskRunner(cluster_kwargs=LIGHT_LOCAL))
    def f():
        runner = current_runner()
        seen.append((runner._own_cluster, runner.client.scheduler.address))
        return inc.submit(1).result()

    assert f() == 2 and f() == 2
    (c1, a1), (c2, a2) = seen
    assert c1 is not c2 and a1 != a2
    assert a1.startswith("tcp://127.0.0.1:")
    assert "127.0.0.1" in c1.dashboard_link
    assert c1.status.name == "closed" and c2.status.name == "closed"


def test_address_uses_the_scheduler_and_never_shuts_it_down(dask_processes):
    runner = DaskTaskRunner(address=dask_processes.address)

    @flow(task_runner=runner)
    def f():
        return current_runner().client.scheduler.address, pid.submit().result()

    for _ in range(2):
        address, worker_pid = f()
        assert address == dask_processes.address
        assert worker_pid in dask_processes.worker_pids().values()
    assert all(p.poll() is None for p in dask_processes.procs)
    dask_processes.wait_for_workers(2, timeout=5)


def test_tasks_run_in_worker_processes_not_the_driver(dask_processes):
    @flow(task_runner=DaskTaskRunner(address=dask_processes.address))
    def f():
        return pid.map(range(8)).result()

    pids = set(f())
    assert os.getpid() not in pids
    assert pids <= set(dask_processes.worker_pids().values())


def test_cluster_class_as_dotted_path_with_kwargs():
    seen = []
    runner = DaskTaskRunner(cluster_class="distributed.deploy.local:LocalCluster",
                            cluster_kwargs={**LIGHT_LOCAL, "processes": False})

    @flow(task_runner=runner)
    def f():
        seen.append(current_runner()._own_cluster)
        return inc.map([1, 2]).result(), pid.submit().result()

    values, worker_pid = f()
    assert values == [2, 3] and worker_pid == os.getpid()  # processes=False: threads in this process
    assert type(seen[0]).__name__ == "LocalCluster" and seen[0].status.name == "closed"
    with pytest.raises(ConfigurationError, match="no_such_module"):
        DaskTaskRunner(cluster_class="no_such_module.Cluster").__enter__()


def test_adapt_kwargs_make_the_cluster_adaptive():
    seen = []
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 0, "threads_per_worker": 1},
                            adapt_kwargs={"minimum": 1, "maximum": 2})

    @flow(task_runner=runner)
    def f():
        cluster = current_runner()._own_cluster
        seen.append((cluster._adaptive.minimum, cluster._adaptive.maximum))
        return inc.submit(41).result()

    assert f() == 42
    assert seen == [(1, 2)]


def test_duplicate_keeps_the_configuration():
    runner = DaskTaskRunner(address="tcp://127.0.0.1:1", batch_size=7, client_kwargs={"name": "x"},
                            connect_timeout=3)
    copy = runner.duplicate()
    assert copy is not runner and copy._config() == runner._config()
    with pytest.raises(ConfigurationError, match="at most one"):
        DaskTaskRunner(address="tcp://127.0.0.1:1", cluster_class="distributed.LocalCluster")
    with pytest.raises(ConfigurationError, match="batch_size"):
        DaskTaskRunner(batch_size=0)


def test_unreachable_address_fails_in_bounded_time_naming_it():
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed

    @flow(task_runner=DaskTaskRunner(address=address, connect_timeout=2))
    def f():
        return 1

    t0 = time.monotonic()
    with pytest.raises(ClusterConnectionError, match=address.replace(".", r"\.")):
        f()
    assert time.monotonic() - t0 < 10


def test_import_distributary_loads_no_dask_and_missing_dask_names_the_extra():
    code = textwrap.dedent("""
        import sys
        import distributary
        assert "dask" not in sys.modules and "distributed" not in sys.modules, "dask was imported"
        sys.modules["distributed"] = None  # as if dask were not installed
        from distributary.runners import get_runner
        try:
            get_runner("dask")
        except ImportError as exc:
            print(type(exc).__name__, exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "MissingDependencyError" in out.stdout and 'pip install "distributary[dask]"' in out.stdout


# -- inside tasks -----------------------------------------------------------------------------------------------
def test_get_dask_client_inside_a_task_reaches_the_same_cluster(dask_processes):
    @flow(task_runner=DaskTaskRunner(address=dask_processes.address))
    def f():
        with get_dask_client() as client:  # in the flow: the runner's own client
            assert client is current_runner().client
        return uses_client.submit(10).result()

    total, address = f()
    assert total == 45 and address == dask_processes.address


def test_logs_and_live_states_from_workers_reach_the_driver_quickly(dask_processes, capfd):
    @flow(task_runner=DaskTaskRunner(address=dask_processes.address))
    def f():
        fut = chatty.submit("tag-123", 4.0)
        t0 = time.monotonic()
        seen = ""
        while "printed tag-123" not in seen and time.monotonic() - t0 < 3.5:
            time.sleep(0.1)
            seen += capfd.readouterr().err
        waited = time.monotonic() - t0
        running = fut.state.is_running() and not fut.done()
        return seen, waited, running, fut.result()

    seen, waited, running, value = f()
    assert value == "tag-123"
    assert "chatty-0 - logged tag-123 from pid" in seen and "chatty-0 - printed tag-123" in seen
    assert waited < 2.5  # the task still sleeps: these lines came while it ran
    assert running
    assert f"from pid {os.getpid()}" not in seen


# -- packing and the data path ----------------------------------------------------------------------------------
def test_large_map_is_packed_and_every_run_keeps_its_own_state(dask_processes):
    runner = CountingDaskRunner(address=dask_processes.address)
    n = 10_000

    @flow(task_runner=runner)
    def f():
        futs = inc.map(range(n))
        values = futs.result()
        r = current_runner()
        return values, [fu.task_run for fu in futs], list(r.batches), list(r.fetches), r.task_puts

    values, runs, batches, fetches, puts = f()
    assert values == [i + 1 for i in range(n)]
    assert sum(batches) == n and len(batches) <= 40  # ~4 batches per worker thread
    assert fetches == [len(batches)]                 # one bulk fetch, each batch once
    assert puts == 1                                 # the task went to the cluster once
    assert len({r.id for r in runs}) == n
    for r in runs[:: n // 50]:
        assert [s.name for s in r.state_history] == ["Pending", "Running", "Completed"]
        assert r.run_count == 1 and r.start_ts <= r.end_ts and r.worker.startswith("tcp://127.0.0.1:")


def test_packing_off_with_batch_size_one(dask_processes):
    runner = CountingDaskRunner(address=dask_processes.address, batch_size=1)

    @flow(task_runner=runner)
    def f():
        return inc.map(range(60)).result(), list(current_runner().batches)

    values, batches = f()
    assert values == list(range(1, 61)) and batches == [1] * 60


def test_at_most_max_in_flight_batches_are_on_the_cluster(dask_processes):
    runner = CountingDaskRunner(address=dask_processes.address, batch_size=5, max_in_flight=3)

    @flow(task_runner=runner)
    def f():
        futs = inc.map(range(300))
        r = current_runner()
        return futs.result(), len(r.batches), r.peak_in_flight, r._pump.in_flight

    values, n_batches, peak, left = f()
    assert values == list(range(1, 301)) and n_batches == 60
    assert peak == 3 and left == 0


def test_values_move_worker_to_worker_not_through_the_driver(dask_processes):
    runner = CountingDaskRunner(address=dask_processes.address)

    @flow(task_runner=runner)
    def f():
        first = inc.map(range(200))
        second = inc.map(first)
        third = ident.submit([second[0], second[-1]])
        third.wait()
        fetched_before = list(current_runner().fetches)
        return fetched_before, third.result(), current_runner().task_puts

    fetched_before, value, puts = f()
    assert fetched_before == []  # nothing came to the driver until .result()
    assert value == [2, 201]
    assert puts == 2             # inc and ident, each shipped once


def test_unpicklable_argument_fails_only_that_run_naming_task_and_type(dask_processes):
    out = []

    @flow(task_runner=DaskTaskRunner(address=dask_processes.address, batch_size=3))
    def f():
        futs = ident.map([1, threading.Lock(), 3])
        futs.wait()
        bad_return = make_lock.submit()
        bad_return.wait()
        out.append((futs, bad_return))  # futures still referenced when the flow ends get their values

    f()
    states, bad_return = [fu.state for fu in out[0][0]], out[0][1].state
    assert states[0].result() == 1 and states[2].result() == 3
    assert states[1].is_failed()
    with pytest.raises(SerializationError, match=r"'ident'.*argument 'x' \(a value of type lock\)"):
        states[1].result()
    assert bad_return.is_failed()
    with pytest.raises(SerializationError, match="'make_lock'.*type lock"):
        bad_return.result()


# -- worker death -----------------------------------------------------------------------------------------------
def test_killed_worker_is_retried_when_the_task_has_retries(dask_processes, tmp_path):
    counter = str(tmp_path / "c")

    @flow(task_runner=DaskTaskRunner(address=dask_processes.address))
    def f():
        fut = kill_my_worker_first.with_options(retries=1).submit(counter)
        return fut.result(), fut.task_run

    try:
        value, run = f()
    finally:
        dask_processes.wait_for_workers()
    names = [s.name for s in run.state_history]
    assert value == "survived" and calls(counter) == 2
    assert names[:3] == ["Pending", "Crashed", "AwaitingRetry"] and names[-1] == "Completed"
    assert run.run_count == 2


class TwoRequestRunner(DaskTaskRunner):
    """A scheduler that did not take the one-request attempt handler (e.g. it cannot import distributary)."""

    def _install_handler(self) -> bool:
        return False


@pytest.mark.parametrize("runner_cls", [DaskTaskRunner, TwoRequestRunner], ids=["one-request", "two-requests"])
def test_killed_worker_without_retries_ends_crashed_without_a_rerun(dask_processes, tmp_path, runner_cls):
    counter = str(tmp_path / "c")

    out = []

    @flow(task_runner=runner_cls(address=dask_processes.address))
    def f():
        fut = kill_my_worker.submit(counter)
        t0 = time.monotonic()
        fut.wait(60)
        out.append(fut.state)
        return time.monotonic() - t0, inc.submit(1).result()

    try:
        waited, after = f()
        state = out[0]
    finally:
        dask_processes.wait_for_workers()
    assert state.is_crashed() and "died" in state.message and "kill_my_worker-0" in state.message
    assert calls(counter) == 1  # Dask's own re-run was stopped before the task ran again
    assert waited < 30 and after == 2


def test_worker_killed_from_outside_mid_task(dask_processes, tmp_path):
    pid_file = tmp_path / "pid"

    @flow(task_runner=DaskTaskRunner(address=dask_processes.address))
    def f():
        fut = sleeper.submit(str(pid_file), 60)
        deadline = time.monotonic() + 30
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        fut.wait(60)
        out.append(fut.state)

    out = []
    try:
        f()
        state = out[0]
    finally:
        dask_processes.wait_for_workers()
    assert state.is_crashed() and "died" in state.message


def test_killed_worker_in_a_packed_batch(dask_processes, tmp_path):
    """The crashed run is not known inside a batch: its runs go again one per Dask task, the others complete."""
    once, always = tmp_path / "once", tmp_path / "always"
    once.mkdir()
    always.mkdir()

    @flow(task_runner=DaskTaskRunner(address=dask_processes.address, batch_size=10))
    def f():
        a = kill_at.map(str(once), range(20), 13, False)
        b = kill_at.map(str(always), range(20), 4, True)
        a.wait()
        b.wait()
        out.append((a, b))

    out = []
    try:
        f()
        a, b = ([fu.state for fu in futs] for futs in out[0])
    finally:
        dask_processes.wait_for_workers()
    assert [s.result() for s in a] == list(range(20))
    assert [s.is_completed() for s in b] == [i != 4 for i in range(20)]
    assert b[4].is_crashed() and "died" in b[4].message
    assert calls(str(always / "bad")) == 2  # once inside the batch, once alone


# -- runs linked to unfinished upstreams ------------------------------------------------------------------------
@task
def slow_inc(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x + 1


@task
def counted_inc(counter: str, x: int) -> int:
    bump(counter)
    return x + 1


@task
def kill_my_worker_first_then(counter: str, value: int) -> int:
    if bump(counter) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def test_a_run_given_an_unfinished_future_goes_to_the_cluster_at_once(dask_processes):
    """The downstream run is on the scheduler (a Dask dependency) before its upstream has finished: a chain
    costs Dask's own hand-off per link, not a round trip through the driver."""
    seen = []

    @flow(task_runner=DaskTaskRunner(address=dask_processes.address))
    def f():
        a = slow_inc.submit(0, 2.0)
        b = inc.submit(a)
        c = inc.submit(b)
        client = current_runner().client
        deadline = time.monotonic() + 1.5
        keys: list[str] = []
        while time.monotonic() < deadline and len(keys) < 2:
            keys = [str(k) for k in client.futures if str(k).startswith("distributary-inc-")]
            time.sleep(0.02)
        seen.append((len(keys), a.done()))
        return c.result()

    assert f() == 3
    assert seen == [(2, False)]


def test_linked_run_waits_for_the_retry_of_an_upstream_whose_worker_died(dask_processes, tmp_path):
    up, down = str(tmp_path / "up"), str(tmp_path / "down")

    @flow(task_runner=DaskTaskRunner(address=dask_processes.address))
    def f():
        a = kill_my_worker_first_then.with_options(retries=1).submit(up, 41)
        b = counted_inc.submit(down, a)
        return b.result(), a.task_run, b.task_run

    try:
        value, a_run, b_run = f()
    finally:
        dask_processes.wait_for_workers()
    assert value == 42 and calls(up) == 2 and calls(down) == 1
    assert [s.name for s in a_run.state_history][:3] == ["Pending", "Crashed", "AwaitingRetry"]
    assert b_run.run_count == 1 and b_run.state.is_completed()


def test_linked_run_of_an_upstream_crashed_with_its_worker_is_not_ready(dask_processes, tmp_path):
    up, down = str(tmp_path / "up"), str(tmp_path / "down")
    out = []

    @flow(task_runner=DaskTaskRunner(address=dask_processes.address))
    def f():
        a = kill_my_worker.submit(up)
        b = counted_inc.submit(down, a)
        b.wait(60)
        out.append((a.state, b.state))

    try:
        f()
    finally:
        dask_processes.wait_for_workers()
    a_state, b_state = out[0]
    assert a_state.is_crashed() and calls(up) == 1
    assert b_state.name == "NotReady" and "kill_my_worker" in b_state.message and calls(down) == 0


# -- results ----------------------------------------------------------------------------------------------------
def test_result_persisted_from_dask_is_a_cache_hit_in_another_process(dask_processes, tmp_path):
    module = tmp_path / "cachemod.py"
    module.write_text(textwrap.dedent("""
        from distributary import flow, task
        from distributary.cache_policies import INPUTS

        @task(cache_policy=INPUTS, persist_result=True)
        def square(x):
            return x * x

        def run(runner, store):
            @flow(task_runner=runner, result_storage=store)
            def f():
                futs = square.map([1, 2, 3])
                return futs.result(), [fu.state.name for fu in futs]
            return f()
    """))
    store = str(tmp_path / "store")
    sys.path.insert(0, str(tmp_path))
    try:
        import cachemod

        cloudpickle.register_pickle_by_value(cachemod)
        values, names = cachemod.run(DaskTaskRunner(address=dask_processes.address), store)
    finally:
        sys.path.remove(str(tmp_path))
    assert values == [1, 4, 9] and names == ["Completed"] * 3
    code = f"import cachemod; print(cachemod.run('threads', {store!r}))"  # same module name, so same task key
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "([1, 4, 9], ['Cached', 'Cached', 'Cached'])" in out.stdout


# -- re-executions after a worker death (issue 15) ----------------------------------------------------------------
@task
def pid_then(counter: str, fail_again: bool) -> int:
    """Returns its pid the first time; a re-execution fails if `fail_again`, else returns the same kind of value."""
    if bump(counter) > 1 and fail_again:
        raise ValueError("a different outcome the second time")
    return os.getpid()


@pytest.mark.parametrize("fail_again", [False, True])
def test_values_of_a_re_execution_are_used_only_if_it_ended_the_same_way(dask_processes, tmp_path, fail_again):
    """The worker holding a completed run's value dies before the driver fetched it: Dask computes it again. The
    re-execution is logged at WARNING; its value is used only if it ended as the run already had (Completed)."""
    counter = str(tmp_path / "count")

    @flow(task_runner=DaskTaskRunner(address=dask_processes.address))
    def f():
        fut = pid_then.submit(counter, fail_again)
        fut.wait()
        assert fut.state.is_completed()
        os.kill(_worker_pid(fut), signal.SIGKILL)
        try:
            return ("value", fut.result())
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            return ("error", exc)

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("distributary.runners")
    logger.addHandler(handler)
    try:
        kind, got = f()
    finally:
        logger.removeHandler(handler)
        dask_processes.wait_for_workers()
    assert calls(counter) == 2
    assert any("run again by the cluster" in r.getMessage() or "ran them again" in r.getMessage()
               for r in records)
    if fail_again:
        assert kind == "error" and "ended differently" in str(got)
    else:
        assert kind == "value" and isinstance(got, int)


def _worker_pid(fut) -> int:
    """The pid of the Dask worker that holds the future's batch (asked from the worker itself)."""
    runner = current_runner()
    address = fut.task_run.worker
    return runner.client.run(os.getpid, workers=[address])[address]
