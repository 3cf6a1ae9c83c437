"""Prefect 3 module paths a user's imports rely on."""
from __future__ import annotations

import subprocess
import sys

from distributary import flow, task


def test_logging_package_paths():
    from distributary.logging import get_run_logger
    from distributary.logging.handlers import PrefectConsoleHandler
    from distributary.logging.loggers import flow_run_logger, get_logger, task_run_logger

    assert callable(get_run_logger) and PrefectConsoleHandler is not None
    seen = []

    def on_done(fl, flow_run, state):
        flow_run_logger(flow_run).info("hook saw %s", state.name)
        seen.append(flow_run.name)

    @task
    def t():
        return 1

    @flow(on_completion=[on_done])
    def f():
        return t()

    f()
    assert seen and get_logger("x").name == "distributary.x"
    assert task_run_logger.__name__ == "task_run_logger"


def test_runner_helpers_reexported_without_importing_dask_or_ray_early():
    code = ("import sys, distributary.runners as r; assert 'dask' not in sys.modules and 'ray' not in sys.modules; "
            "from distributary.runners import get_dask_client, remote_options; "
            "from distributary.runners.dask import get_dask_client as g; assert get_dask_client is g; "
            "from distributary.runners.ray import remote_options as ro; assert remote_options is ro; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr


def test_visualize_says_what_to_use_instead():
    import pytest

    @flow
    def f():
        return 1

    with pytest.raises(NotImplementedError, match="task-run ls"):
        f.visualize()
