"""The process runner as a backend of the remote protocol, with real worker processes and real faults: a worker
SIGKILLed mid-map, a poison input, a script without a main guard, a killed driver, initializer, batching."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from marks import KillAt, mark, markers

from distributary import flow, task, unmapped
from distributary.engine import transitions
from distributary.futures import wait
from distributary.runners.process import ProcessPoolTaskRunner

PYTHON = sys.executable
REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class _Events:
    kinds = None

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def handle(self, events) -> None:
        self.events.extend(events)


def test_sigkill_of_a_worker_mid_map_loses_nothing_charges_only_its_run_and_reruns_nothing(tmp_path,
                                                                                          warnings_logged):
    n = 5000
    marks = tmp_path / "marks"
    marks.mkdir()

    @task(retries=1)
    def work(x: int, d: str) -> int:
        mark(d, x)
        time.sleep(0.0005)
        return x * 2

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def fan() -> list:
        futs = work.map(range(n), unmapped(str(marks)))
        wait(futs)
        return [(f.state.type.value, f.task_run.run_count, f.result()) for f in futs]

    killer = KillAt(marks, n // 2)
    out = fan()
    killed = [killer.join()]
    records = warnings_logged
    assert [v for _, _, v in out] == [x * 2 for x in range(n)]          # nothing lost
    assert {s for s, _, _ in out} == {"COMPLETED"}
    seen = markers(marks)
    assert set(seen) == set(range(n))
    twice = {x: pids for x, pids in seen.items() if len(pids) > 1}
    charged = {x for x, (_, rc, _) in enumerate(out) if rc > 1}
    # Only the run that was running on the dead worker used its retry (it ran twice, or once if the kill came
    # before its function began); nothing that finished ran again, and the runs queued on the dead worker were
    # resent without using a retry.
    assert len(charged) <= 1 and set(twice) <= charged
    for pids in twice.values():
        assert killed[0] in pids and len(pids) == 2
    crash_logs = [r for r in records if r.levelno == logging.ERROR and "died while running" in r.getMessage()]
    assert len(crash_logs) == len(charged)
    assert all("processes-" in r.getMessage() for r in crash_logs)  # names the worker


def test_a_poison_input_crashes_only_its_own_run_with_retries_honoured(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()

    @task(retries=2)
    def maybe_die(x: int, d: str) -> int:
        mark(d, x)
        if x == 37:
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def fan() -> list:
        futs = maybe_die.map(range(200), unmapped(str(marks)))
        wait(futs)
        return [(f.state.type.value, f.task_run.run_count) for f in futs]

    out = fan()
    assert out[37] == ("CRASHED", 3)  # 1 run + 2 retries, each killed its worker
    assert all(s == "COMPLETED" and rc == 1 for i, (s, rc) in enumerate(out) if i != 37)
    seen = markers(marks)
    assert len(seen[37]) == 3
    assert all(len(seen[x]) == 1 for x in range(200) if x != 37)


def test_the_sink_sees_every_state_of_every_run_in_order_including_a_crash(tmp_path):
    sink = _Events()

    @task(retries=1)
    def dies_once(x: int, d: str) -> int:
        flag = Path(d, "died")
        if x == 500 and not flag.exists():
            flag.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def fan() -> list:
        futs = dies_once.map(range(1000), unmapped(str(tmp_path)))
        wait(futs)
        return [f.task_run for f in futs]

    transitions.add_sink(sink)
    try:
        runs = fan()
        transitions.flush(5)
    finally:
        transitions.remove_sink(sink)
    by_run: dict[int, list[str]] = {}
    for kind, run, payload in sink.events:
        if kind == "state_changed" and getattr(run, "task_key", None) is not None and run in runs:
            by_run.setdefault(id(run), []).append(payload.type.value)
    assert len(by_run) == 1000
    for run in runs:
        seen = by_run[id(run)]
        assert seen == [s.type.value for s in run.state_history[1:]]  # every state after the initial Pending
        if run.run_count == 1:
            assert seen == ["RUNNING", "COMPLETED"]
    crashed = [r for r in runs if r.run_count == 2]
    assert len(crashed) == 1
    # The attempt on the killed worker: its Running died with the worker; the driver records the crash and the
    # retry, then the states of the second attempt.
    assert [s.name for s in crashed[0].state_history[1:]] == ["Crashed", "AwaitingRetry", "Retrying", "Completed"]


def _set_env(name: str, value: str) -> None:
    os.environ[name] = value


def test_initializer_runs_in_every_worker_before_work(tmp_path):
    @task
    def read() -> str:
        return os.environ.get("DISTRIBUTARY_TEST_INIT", "unset")

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2, initializer=_set_env,
                                            initargs=("DISTRIBUTARY_TEST_INIT", "done")))
    def f() -> list:
        return [x.result() for x in [read.submit() for _ in range(6)]]

    assert f() == ["done"] * 6


def test_a_failing_initializer_is_a_clear_error():
    @task
    def one() -> int:
        return 1

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1, initializer=int, initargs=("nope",)))
    def f() -> int:
        return one.submit().result()

    with pytest.raises(Exception, match="initializer of the process runner failed"):
        f()


def test_a_map_is_batched_and_the_task_shipped_once_per_worker(tmp_path):
    @task
    def pid(x: int) -> int:
        return os.getpid()

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f() -> list:
        return pid.map(range(400)).result()

    pids = f()
    assert len(set(pids)) == 2
    # batches of consecutive runs (ceil(400 / (4 * 2)) = 50): one worker per block of 50
    assert all(len(set(pids[i:i + 50])) == 1 for i in range(0, 400, 50))


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_a_script_without_main_guard_fails_clearly_instead_of_hanging(tmp_path):
    path = _script(tmp_path, """
        from distributary import flow, task
        from distributary.runners.process import ProcessPoolTaskRunner

        @task
        def inc(x):
            return x + 1

        @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
        def f():
            return inc.submit(1).result()

        print("RESULT", f())
    """)
    t0 = time.monotonic()
    proc = subprocess.run([PYTHON, str(path)], env=_env(), capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert time.monotonic() - t0 < 60
    assert proc.returncode != 0
    assert 'if __name__ == "__main__":' in proc.stderr
    assert str(path) in proc.stderr


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie waiting to be reaped is gone too
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True


@pytest.mark.parametrize("context", ["forkserver", "spawn"])
def test_workers_exit_when_the_driver_is_killed(tmp_path, context):
    path = _script(tmp_path, f"""
        import os, sys, time
        from pathlib import Path
        from distributary import flow, task
        from distributary.runners.process import ProcessPoolTaskRunner

        @task
        def hold(i, d):
            Path(d, f"{{os.getpid()}}").touch()
            time.sleep(120)

        @flow(task_runner=ProcessPoolTaskRunner(max_workers=2, mp_context={context!r}))
        def f(d):
            return [x.result() for x in [hold.submit(i, d) for i in range(2)]]

        if __name__ == "__main__":
            f(sys.argv[1])
    """)
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    proc = subprocess.Popen([PYTHON, str(path), str(pids_dir)], env=_env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(os.listdir(pids_dir)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [int(p) for p in os.listdir(pids_dir)]
        assert len(pids) == 2
    finally:
        proc.kill()
        proc.wait(10)
    deadline = time.monotonic() + 10
    while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [p for p in pids if not _gone(p)]
    for p in alive:
        os.kill(p, signal.SIGKILL)
    assert not alive, f"worker processes {alive} outlived their driver"
