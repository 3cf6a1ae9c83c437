"""Deployments: a flow registered in the run store with its schedules and defaults, run on demand
(`run_deployment`) or on schedule by a `serve()` process, each run in its own subprocess.

    from distributary.deployments import run_deployment

    run = run_deployment("etl/nightly", parameters={"day": "2026-01-01"}, timeout=0)

Modules: `definition` (RunnerDeployment, entrypoints), `scheduler` (runs ahead of time, Late runs), `runner`
(serve(): the poll loop, subprocesses, cancellation, shutdown), `execute` (what runs in the subprocess), `run`
(run_deployment).
"""
from __future__ import annotations

from typing import Any

__all__ = ["run_deployment", "RunnerDeployment", "serve", "Runner"]


def __getattr__(name: str) -> Any:
    # the submodules import SQLAlchemy (through the run store): only when used
    if name == "run_deployment":
        from .run import run_deployment

        return run_deployment
    if name == "RunnerDeployment":
        from .definition import RunnerDeployment

        return RunnerDeployment
    if name in ("serve", "Runner"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'distributary.deployments' has no attribute {name!r}")
