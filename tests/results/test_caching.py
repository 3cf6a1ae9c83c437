"""Caching and persisted results end to end through flows and tasks, on every store backend."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from distributary import flow, task
from distributary.cache_policies import INPUTS
from distributary.errors import CacheKeyError, ConfigurationError
from distributary.results import load

calls: list[str] = []


def in_flow(fn):
    """Run `fn` inside a flow and hand back what it returns untouched (a flow that returns states would end in
    them)."""
    out = []
    flow(lambda: out.append(fn()))()
    return out[0]


@task(cache_policy=INPUTS)
def square(x: int) -> int:
    calls.append(f"square({x})")
    return x * x


@task(cache_policy=INPUTS)
def cube(x: int) -> int:
    calls.append(f"cube({x})")
    return x * x * x


def test_cache_hits_on_every_backend(store_url):
    store = store_url.store()
    cached_square = square.with_options(result_storage=store)
    calls.clear()

    @flow
    def f():
        return [cached_square(i, return_state=True) for i in (2, 3, 2)]

    first = f()
    second = f()
    assert [s.result() for s in first] == [4, 9, 4] and [s.result() for s in second] == [4, 9, 4]
    assert [s.name for s in first] == ["Completed", "Completed", "Cached"]
    assert [s.name for s in second] == ["Cached"] * 3
    assert calls == ["square(2)", "square(3)"]
    ref = second[0].result_ref
    assert ref is not None and store.url in ref.url


def test_reference_resolves_as_an_argument_and_in_another_process(store_url):
    store = store_url.store()
    persisted = square.with_options(result_storage=store, cache_policy=None, persist_result=True)

    @flow
    def produce():
        return persisted(7, return_state=True).result_ref

    ref = produce()

    @task
    def plus_one(value: int) -> int:
        return value + 1

    @flow
    def consume(r):
        return plus_one(r)

    assert consume.with_options(validate_parameters=False)(ref) == 50
    assert load(ref) == 49 and load(ref.url, store_url.storage_options or None) == 49
    if store_url.kind == "memory":
        return  # memory:// lives in one process
    code = "import pickle, sys; from distributary.results import load; print(load(pickle.loads(sys.stdin.buffer.read())))"
    import pickle

    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(ref), capture_output=True,
                         env=store_url.subprocess_env(), timeout=120)
    assert out.stdout.decode().strip() == "49", out.stderr.decode()[-2000:]


def test_two_tasks_with_equal_inputs_never_share_an_entry(tmp_path):
    calls.clear()
    store = str(tmp_path)

    @flow
    def f():
        return square.with_options(result_storage=store)(3), cube.with_options(result_storage=store)(3)

    assert f() == (9, 27) and f() == (9, 27)
    assert calls == ["square(3)", "cube(3)"]


def test_cache_key_fn_is_used_as_given_so_tasks_can_share_on_purpose(tmp_path):
    calls.clear()
    shared = {"cache_key_fn": lambda ctx, params: f"shared-{params['x']}", "result_storage": str(tmp_path)}

    @flow
    def f():
        return square.with_options(**shared)(2), cube.with_options(**shared)(2)

    assert f() == (4, 4)  # cube found square's entry: same key on purpose
    assert calls == ["square(2)"]


def test_expiration_and_refresh(tmp_path):
    calls.clear()
    short = square.with_options(result_storage=str(tmp_path), cache_expiration=dt.timedelta(seconds=0.5))

    @flow
    def f(refresh: bool = False):
        return short.with_options(refresh_cache=refresh)(5, return_state=True).name

    assert f() == "Completed" and f() == "Cached"
    time.sleep(0.7)
    assert f() == "Completed"  # expired: computed again
    assert f(refresh=True) == "Completed"  # refresh_cache recomputes and overwrites
    assert f() == "Cached"
    assert calls == ["square(5)"] * 3


def test_unhashable_input_names_the_argument(tmp_path):
    @task(cache_policy=INPUTS, result_storage=str(tmp_path))
    def uses_lock(lock, n: int) -> int:
        return n

    state = in_flow(lambda: uses_lock(threading.Lock(), 1, return_state=True))
    assert state.is_failed()
    with pytest.raises(CacheKeyError, match=r"'lock'.*INPUTS - .lock."):
        state.result()
    ok = uses_lock.with_options(cache_policy=INPUTS - "lock")
    assert in_flow(lambda: ok(threading.Lock(), 2)) == 2


def test_corrupt_record_is_a_miss_with_a_warning(tmp_path, caplog):
    calls.clear()
    stored = square.with_options(result_storage=str(tmp_path))
    in_flow(lambda: stored(4))
    for meta in tmp_path.rglob("*.meta.json"):
        meta.write_text("{not json")
    with pytest.warns(Warning):
        assert in_flow(lambda: stored(4, return_state=True)).name == "Completed"
    assert calls == ["square(4)", "square(4)"]


def test_storage_key_template_in_memory_flag_and_flow_inheritance(tmp_path):
    @task(persist_result=True, result_storage_key="{parameters[name]}-{task_run.id}.pkl",
          cache_result_in_memory=False)
    def greet(name: str) -> str:
        return f"hello {name}"

    out = []

    @flow(result_storage=str(tmp_path / "flow-store"))
    def f():
        out.append(greet("ada", return_state=True))

    f()
    state = out[0]
    assert state.data is not None and state.result() == "hello ada"  # loaded from the store
    files = [p.name for p in (tmp_path / "flow-store").rglob("*.meta.json")]  # small: inside its record
    assert any(n.startswith("ada-") and n.endswith(".pkl.meta.json") for n in files), files


def test_persist_by_default_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTRIBUTARY_RESULTS_PERSIST_BY_DEFAULT", "true")
    monkeypatch.setenv("DISTRIBUTARY_RESULTS_DEFAULT_STORAGE", str(tmp_path / "default"))

    @task
    def plain(x: int) -> int:
        return x

    state = in_flow(lambda: plain(1, return_state=True))
    assert state.result_ref is not None and (tmp_path / "default").exists()


def test_a_value_the_serializer_cannot_handle_fails_only_that_run(tmp_path):
    @task(persist_result=True, result_serializer="json", result_storage=str(tmp_path))
    def make(kind: str):
        return {"ok": 1} if kind == "good" else threading.Lock()

    good, bad = in_flow(lambda: (make("good", return_state=True), make("bad", return_state=True)))
    assert good.is_completed() and bad.is_failed()
    with pytest.raises(Exception, match=r"make-1.*json.*lock"):
        bad.result()


def test_unreachable_store_fails_the_run_with_the_url_and_spares_others(tmp_path):
    bad_url = "s3://no-such-bucket-here/x"

    env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "y", "AWS_MAX_ATTEMPTS": "1"}
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_caching import square
        from distributary import flow, task
        @task
        def fine(): return 1
        out = []
        @flow
        def f():
            b = square.with_options(result_storage={bad_url!r}, cache_policy=None, persist_result=True)
            out.extend([b(2, return_state=True), fine(return_state=True)])
        f()
        broken, ok = out
        print(broken.name, ok.name)
        print(broken.message)
    """)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    assert lines[0] == "Failed Completed", out.stderr[-3000:]
    assert bad_url.split("/x")[0] in lines[1]


SERIAL_WORKER = textwrap.dedent("""
    import sys, time, os
    from distributary import flow, task
    from distributary.cache_policies import INPUTS
    from distributary.transactions import transaction

    store, marker = sys.argv[1], sys.argv[2]

    @task(cache_policy=INPUTS, result_storage=store)
    def slow_compute(x: int) -> int:
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(1.0)
        return x * 10

    @flow(isolation_level="SERIALIZABLE")
    def f():
        state = slow_compute(4, return_state=True)
        return state.name, state.result()

    print(*f())
""")


def test_serializable_isolation_lets_exactly_one_process_compute(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(SERIAL_WORKER)
    marker = tmp_path / "computed"
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "store"), str(marker)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    results = sorted(o[0].strip() for o in outs)
    assert len(marker.read_text().splitlines()) == 1, outs
    assert results == ["Cached 40", "Cached 40", "Completed 40"], outs


POLICY_WORKER = textwrap.dedent("""
    import os, sys, time
    from distributary import flow, task
    from distributary.cache_policies import INPUTS
    from distributary.locking import FileSystemLockManager

    store, marker, locks = sys.argv[1], sys.argv[2], sys.argv[3]
    policy = INPUTS.configure(isolation_level="SERIALIZABLE", key_storage=store,
                              lock_manager=FileSystemLockManager(locks) if locks != "-" else None)

    @task(cache_policy=policy)
    def slow_compute(x: int) -> int:
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(0.5)
        return x * 10

    @flow
    def f():
        state = slow_compute(4, return_state=True)
        return state.name, state.result()

    print(*f())
""")


@pytest.mark.parametrize("locks", ["store-leases", "filesystem-lock-manager"])
def test_serializable_on_the_cache_policy_lets_one_of_eight_processes_compute(tmp_path, locks):
    """Prefect 3's idiom `INPUTS.configure(isolation_level="SERIALIZABLE")`, with key_storage (and a lock
    manager): eight racing processes, one computation."""
    script = tmp_path / "worker.py"
    script.write_text(POLICY_WORKER)
    marker = tmp_path / "computed"
    lock_arg = str(tmp_path / "locks") if locks == "filesystem-lock-manager" else "-"
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "store"), str(marker), lock_arg],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert len(marker.read_text().splitlines()) == 1, outs
    assert sorted(o[0].strip() for o in outs) == ["Cached 40"] * 7 + ["Completed 40"], outs


def test_a_misspelt_isolation_level_is_refused():
    from distributary.cache_policies import INPUTS

    with pytest.raises(ConfigurationError, match="SERIALIZABLE"):
        INPUTS.configure(isolation_level="SERIALISABLE")
