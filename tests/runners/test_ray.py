"""RayTaskRunner beyond the runner contract: Ray workers, remote_options, one remote function per run, the data
path, telemetry, killed workers, unpicklable arguments, a 10^4 fan-out, connection errors and the local instance.
Real Ray (the session instance of ray_servers.py); task functions are pickled by value."""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import pytest

from distributary import flow, get_run_logger, task
from distributary.errors import ClusterConnectionError, ConfigurationError, CrashedRun, SerializationError
from distributary.runners import get_runner
from distributary.states import UNSET

cloudpickle.register_pickle_by_value(sys.modules[__name__])
REPO = Path(__file__).resolve().parents[2]


@task
def whoami(_: int = 0) -> tuple[int, str]:
    import ray

    return os.getpid(), ray.get_runtime_context().get_worker_id()


@task
def resources(_: int = 0) -> dict:
    import ray

    return ray.get_runtime_context().get_assigned_resources()


@task
def nap(seconds: float) -> int:
    time.sleep(seconds)
    return 0


@task
def inc(x: int) -> int:
    return x + 1


@task
def blob(n: int) -> bytes:
    return b"x" * n


@task
def size(data: bytes) -> int:
    return len(data)


@task(log_prints=True)
def chatty(seconds: float) -> str:
    get_run_logger().info("step one on %d", os.getpid())
    print("a printed line")
    time.sleep(seconds)
    return "done"


@task
def die_first_time(marker: str) -> str:
    if not os.path.exists(marker):
        Path(marker).write_text("died once")
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


@task
def sleep_for_killer(pidfile: str) -> str:
    Path(pidfile).write_text(str(os.getpid()))
    time.sleep(60)
    return "not killed"


@task
def kill_if(x: int, victim: int) -> int:
    if x == victim:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


@task
def echo(value: object) -> str:
    return type(value).__name__


_BIG_CONSTANT = bytes(600 * 1024)  # pickled with the task below (this module is pickled by value)


@task
def heavy_definition(x: int) -> int:
    return len(_BIG_CONSTANT) + x


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------------------
def test_import_is_lazy_and_missing_ray_names_the_extra():
    code = (
        "import sys\n"
        "import distributary\n"
        "assert 'ray' not in sys.modules, 'import distributary imported ray'\n"
        "sys.modules['ray'] = None  # as if ray were not installed\n"
        "from distributary.errors import MissingDependencyError\n"
        "from distributary.runners import get_runner\n"
        "try:\n"
        "    get_runner('ray')\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert 'pip install "distributary[ray]"' in out.stdout


def test_registered_name_config_and_duplicate():
    from distributary.runners.ray import RayTaskRunner

    runner = get_runner("ray")
    assert isinstance(runner, RayTaskRunner) and runner.address is None
    configured = RayTaskRunner(address="127.0.0.1:6379", init_kwargs={"num_cpus": 1}, batch_size=7)
    twin = configured.duplicate()
    assert twin is not configured and not twin.started
    assert (twin.address, twin.init_kwargs, twin.batch_size) == ("127.0.0.1:6379", {"num_cpus": 1}, 7)
    with pytest.raises(ConfigurationError, match="not a Ray address"):
        RayTaskRunner(address="http://127.0.0.1:1")


def test_tasks_run_in_ray_worker_processes(ray_runner):
    import ray

    @flow(task_runner=ray_runner)
    def f():
        futs = whoami.map(range(4))
        return [fu.result() for fu in futs], [fu.task_run.worker for fu in futs]

    where, workers = f()
    driver_worker = ray.get_runtime_context().get_worker_id()
    assert all(pid != os.getpid() and wid != driver_worker for pid, wid in where)
    assert all(w.startswith("ray:") and w.endswith(f":{pid}") for w, (pid, _) in zip(workers, where))
    assert ray.is_initialized()  # the runner joined the session's instance and left it running


def test_remote_options_apply_nest_and_are_validated(ray_runner):
    from distributary.runners.ray import current_remote_options, remote_options

    @flow(task_runner=ray_runner)
    def f():
        plain = resources.submit()
        slow = nap.submit(0.5)
        with remote_options(num_cpus=0.5):
            half = resources.submit()
            gated = resources.submit(slow)  # sent after the block ends, with the options it was submitted with
            with remote_options(resources={"gadget": 1}):
                assert current_remote_options() == {"num_cpus": 0.5, "resources": {"gadget": 1}}
                both = resources.map(range(2))
            after = resources.submit()
        assert not gated.done()
        return plain.result(), half.result(), both.result(), after.result(), gated.result()

    plain, half, both, after, gated = f()
    assert plain == {"CPU": 1.0}
    assert half == after == gated == {"CPU": 0.5}
    assert both == [{"CPU": 0.5, "gadget": 1.0}] * 2
    with pytest.raises(ConfigurationError, match="max_retries"):
        with remote_options(max_retries=3):
            pass
    with pytest.raises(ConfigurationError, match="Ray rejects"):
        with remote_options(num_cpus=-1):
            pass


def test_remote_function_defined_once_per_process_and_task_shipped_once_per_run(ray_runner, monkeypatch):
    import ray

    from distributary.runners import ray as ray_mod
    from distributary.runners.ray import remote_options

    real_remote, real_put = ray.remote, ray.put
    defined: list[dict] = []
    puts: list[int] = []

    def counting_remote(*args, **kwargs):
        decorator = real_remote(*args, **kwargs)

        def apply(fn):
            if getattr(fn, "__module__", None) == ray_mod.__name__ and fn.__name__ == "run_task_batch":
                defined.append(kwargs)
            return decorator(fn)

        return apply

    def counting_put(value, **kwargs):
        puts.append(len(value))
        return real_put(value, **kwargs)

    monkeypatch.setattr(ray, "remote", counting_remote)
    monkeypatch.setattr(ray, "put", counting_put)
    monkeypatch.setattr(ray_mod, "_REMOTE_FNS", {})  # none defined yet in this process, whatever ran before

    @flow(task_runner=ray_runner)
    def f():
        singles = [inc.submit(i) for i in range(10)]
        mapped = inc.map(range(40))
        with remote_options(num_cpus=0.5):
            other = [inc.submit(i) for i in range(5)]
        sized = size.submit(b"abc")
        heavy = [heavy_definition.submit(i) for i in range(3)]
        return [s.result() for s in singles + other] + mapped.result() + [x.result() for x in [sized, *heavy]]

    out = f()
    assert out[:15] == [i + 1 for i in range(10)] + [i + 1 for i in range(5)]
    assert out[-4:] == [3, 600 * 1024, 600 * 1024 + 1, 600 * 1024 + 2]
    # (inc, -), (inc, num_cpus=0.5), (size, -), (heavy_definition, -): four definitions for 60 task runs
    assert sorted(d["name"] for d in defined) == ["distributary:heavy_definition", "distributary:inc",
                                                  "distributary:inc", "distributary:size"]
    # small tasks travel inside their remote function; the big one goes to the object store, once
    assert len(puts) == 1 and puts[0] > 600 * 1024
    f()
    # The next flow run (a fresh runner) uses the same remote functions: Ray exported them once for the process;
    # the big task goes to the object store again (its ref is the runner's)
    assert len(defined) == 4 and len(puts) == 2


def test_downstream_value_never_reaches_driver(ray_runner):
    @flow(task_runner=ray_runner)
    def f():
        big = blob.submit(2_000_000)
        n = size.submit(big).result()
        out.append(big.state.data is UNSET)
        return n

    out: list[bool] = []
    assert f() == 2_000_000
    assert out == [True]


def test_logs_and_live_states_reach_the_driver_quickly(ray_runner):
    arrivals: list[tuple[float, logging.LogRecord]] = []
    handler = logging.Handler()
    handler.emit = lambda record: arrivals.append((time.time(), record))  # type: ignore[method-assign]
    logger = logging.getLogger("distributary")
    logger.addHandler(handler)
    latency: dict[str, float] = {}  # seconds from the event on the worker to its arrival on the driver
    try:
        @flow(task_runner=ray_runner)
        def f():
            fut = chatty.submit(3)
            while not fut.done() and len(latency) < 2:
                state = fut.state
                if "running" not in latency and state.is_running():
                    latency["running"] = time.time() - state.ts
                if "log" not in latency:
                    for at, record in list(arrivals):
                        if record.getMessage().startswith("step one"):
                            latency["log"] = at - record.created
                time.sleep(0.02)
            done_early = fut.done()
            return fut.result(), fut.task_run.name, done_early

        value, name, done_early = f()
    finally:
        logger.removeHandler(handler)
    assert value == "done" and not done_early, "the log record and the Running state came only at the end"
    assert latency.get("log", 99) < 2.0 and latency.get("running", 99) < 2.0, latency
    mine = [r for _, r in arrivals if getattr(r, "run_name", None) == name]
    messages = [r.getMessage() for r in mine]
    assert any(m.startswith("step one on") for m in messages) and "a printed line" in messages
    assert all(r.process != os.getpid() for r in mine)


def test_killed_worker_is_retried_when_retries_are_left(ray_runner, tmp_path):
    marker = str(tmp_path / "marker")

    @flow(task_runner=ray_runner)
    def f():
        fut = die_first_time.with_options(retries=1).submit(marker)
        out.append(fut)
        return fut.result(timeout=60)

    out: list = []
    value = f()
    fut = out[0]
    assert value == "survived"
    names = [s.name for s in fut.task_run.state_history]
    assert names[-1] == "Completed" and "Crashed" in names and "AwaitingRetry" in names
    assert fut.task_run.run_count == 2


def test_killed_worker_crashes_the_run_and_waiting_ends(ray_runner, tmp_path):
    pidfile = tmp_path / "pid"

    def killer() -> None:
        deadline = time.monotonic() + 30
        while not pidfile.exists() or not pidfile.read_text():
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)

    @flow(task_runner=ray_runner)
    def f():
        threading.Thread(target=killer, daemon=True).start()
        fut = sleep_for_killer.submit(str(pidfile))
        fut.wait(timeout=45)
        return fut

    t0 = time.monotonic()
    state = f(return_state=True)
    assert time.monotonic() - t0 < 45
    assert state.is_crashed()  # the flow returned a crashed future, which becomes its state (Prefect 3)
    with pytest.raises(CrashedRun, match=r"worker .*died"):
        state.result()


def test_killed_worker_in_a_batch_only_crashes_its_own_run(ray_runner):
    from distributary.runners.ray import RayTaskRunner

    @flow(task_runner=RayTaskRunner(address=ray_runner.address, batch_size=4))
    def f():
        futs = kill_if.map(range(4), victim=2)
        futs.wait(timeout=60)
        states.extend(fu.state for fu in futs)

    states: list = []
    f()
    assert [s.name for s in states] == ["Completed", "Completed", "Crashed", "Completed"]
    assert "died" in states[2].message


def test_unpicklable_argument_fails_that_run_naming_task_and_type(ray_runner):
    @flow(task_runner=ray_runner)
    def f():
        bad = echo.submit(threading.Lock())
        good = echo.submit(1)
        bad.wait(timeout=30)
        out.append(bad.state)
        return good.result()

    out: list = []
    good = f()
    state = out[0]
    assert good == "int" and state.is_failed()
    assert isinstance(state.data, SerializationError)
    assert "'echo'" in state.message and "lock" in state.message


def test_map_of_ten_thousand_keeps_every_run_state(ray_runner):
    n = 10_000

    @flow(task_runner=ray_runner)
    def f():
        futs = inc.map(range(n))
        return futs.result(), [fu.task_run for fu in futs]  # a flow's returned futures become their states

    t0 = time.monotonic()
    values, runs = f()
    elapsed = time.monotonic() - t0
    assert values == list(range(1, n + 1))
    assert len({r.id for r in runs}) == n and len({r.name for r in runs}) == n
    assert all([s.name for s in r.state_history] == ["Pending", "Running", "Completed"] for r in runs)
    assert all(r.worker and r.worker.startswith("ray:") and r.end_ts >= r.start_ts for r in runs)
    assert elapsed < 30


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_unreachable_address_fails_fast_naming_it(scheme):
    from distributary.runners.ray import RayTaskRunner

    address = f"{scheme}127.0.0.1:{_free_port()}"

    @flow(task_runner=RayTaskRunner(address=address, connect_timeout=3))
    def f():
        return inc.submit(1).result()

    t0 = time.monotonic()
    with pytest.raises(ClusterConnectionError, match=address.replace("/", r"\/")):
        f()
    assert time.monotonic() - t0 < 10


def test_runner_starts_and_stops_its_own_local_instance(tmp_path):
    """In a fresh process (this one is connected to the session's instance already)."""
    code = (
        "import os, ray\n"
        "from distributary import flow, task\n"
        "from distributary.runners.ray import RayTaskRunner\n"
        "@task\n"
        "def pid():\n"
        "    return os.getpid()\n"
        "@flow(task_runner=RayTaskRunner(init_kwargs=dict(num_cpus=1, object_store_memory=128 * 2**20)))\n"
        "def f():\n"
        "    assert ray.is_initialized()\n"
        "    return pid.submit(), ray.get_runtime_context().gcs_address\n"
        "worker_pid, gcs = f()\n"
        "assert not ray.is_initialized(), 'the runner left its local Ray instance running'\n"
        "assert worker_pid != os.getpid()\n"
        "print('OK', gcs)\n"
    )
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90, cwd=tmp_path,
                         env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("OK 127.0.0.1:")


def test_joins_an_existing_cluster_and_leaves_it_running(ray_instance, ray_runner, tmp_path):
    """Another process joins the session's instance by address and by "auto" (RAY_ADDRESS); each flow run only
    disconnects, and the instance keeps serving this process."""
    code = (
        "import os, ray\n"
        "from distributary import flow, task\n"
        "from distributary.runners.ray import RayTaskRunner\n"
        "@task\n"
        "def pid():\n"
        "    return os.getpid()\n"
        "for address in (os.environ['RAY_ADDRESS'], 'auto'):\n"
        "    @flow(task_runner=RayTaskRunner(address=address))\n"
        "    def f():\n"
        "        return pid.submit(), ray.get_runtime_context().gcs_address\n"
        "    worker_pid, gcs = f()\n"
        "    assert not ray.is_initialized(), 'the runner stayed connected'\n"
        "    assert worker_pid != os.getpid()\n"
        "    print('JOINED', gcs)\n"
    )
    env = {**os.environ, "RAY_ADDRESS": ray_instance, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90, cwd=tmp_path,
                         env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["JOINED", ray_instance, "JOINED", ray_instance]

    @flow(task_runner=ray_runner)
    def still_there():
        return inc.submit(1).result()

    assert still_there() == 2
