"""Settings travel with a run as data (settings.overlay), and the task-retry defaults come from settings."""
from __future__ import annotations

import threading

from distributary import flow, settings, task


@task
def read_setting() -> str:
    return settings.get("RESULTS_DEFAULT_SERIALIZER")


def test_two_concurrent_flow_runs_with_different_settings_each_see_their_own():
    both_running = threading.Barrier(2, timeout=30)

    @task
    def wait_for_the_other() -> None:
        both_running.wait()

    @flow(task_runner="threads")
    def reads() -> list[str]:
        wait_for_the_other.submit().result()  # both flow runs are in progress at once
        return [f.result() for f in [read_setting.submit() for _ in range(20)]]

    seen: dict[str, list[str]] = {}

    def run(value: str) -> None:
        with settings.overlay({"DISTRIBUTARY_RESULTS_DEFAULT_SERIALIZER": value}):
            seen[value] = reads()

    threads = [threading.Thread(target=run, args=(v,)) for v in ("json", "pickle")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert seen == {"json": ["json"] * 20, "pickle": ["pickle"] * 20}
    assert settings.get("RESULTS_DEFAULT_SERIALIZER") == "cloudpickle"  # outside: the environment's value


def test_overlay_wins_over_the_environment_and_nests(monkeypatch):
    monkeypatch.setenv("DISTRIBUTARY_TASK_RUNNER", "processes")
    assert settings.get("TASK_RUNNER") == "processes"
    with settings.overlay({"DISTRIBUTARY_TASK_RUNNER": "dask"}):
        assert settings.get("TASK_RUNNER") == "dask"
        assert settings.snapshot()["DISTRIBUTARY_TASK_RUNNER"] == "dask"  # shipped with the run's calls
        with settings.overlay({"DISTRIBUTARY_LOGGING_LEVEL": "debug"}):
            assert settings.get("TASK_RUNNER") == "dask"
            assert settings.get("LOGGING_LEVEL") == "DEBUG"
    assert settings.get("TASK_RUNNER") == "processes"


def test_default_retries_of_tasks_come_from_the_setting(monkeypatch):
    monkeypatch.setenv("DISTRIBUTARY_TASKS_DEFAULT_RETRIES", "2")
    monkeypatch.setenv("DISTRIBUTARY_TASKS_DEFAULT_RETRY_DELAY_SECONDS", "0,0.01")
    calls = []

    @task
    def fails_twice() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ValueError("not yet")
        return "done"

    @task(retries=0)
    def sets_its_own() -> None:
        pass

    assert fails_twice.retries == 2 and fails_twice._retry_delays == (0.0, 0.01)
    assert sets_its_own.retries == 0
    state = fails_twice(return_state=True)
    assert state.is_completed() and state.result() == "done" and len(calls) == 3


def test_without_the_setting_tasks_do_not_retry(monkeypatch):
    monkeypatch.delenv("DISTRIBUTARY_TASKS_DEFAULT_RETRIES", raising=False)

    @task
    def plain() -> None:
        pass

    assert plain.retries == 0
