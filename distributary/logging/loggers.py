"""Loggers at Prefect's `prefect.logging.loggers` paths: `get_logger`, `get_run_logger`, and loggers for a given
flow run or task run record (`flow_run_logger`, `task_run_logger`), usable outside the run's own context (in
hooks, for instance)."""
from __future__ import annotations

import logging
from typing import Any

from . import ROOT, RunLoggerAdapter, get_run_logger, setup_logging


def get_logger(name: str | None = None) -> logging.Logger:
    """The `distributary` logger, or its child `distributary.<name>`, with the console handler installed."""
    setup_logging()
    return logging.getLogger(ROOT if not name else f"{ROOT}.{name}")


def flow_run_logger(flow_run: Any, flow: Any = None, **extra: Any) -> logging.LoggerAdapter:
    """A logger whose records carry `flow_run`'s name and id (Prefect's `flow_run_logger`)."""
    setup_logging()
    return RunLoggerAdapter(logging.getLogger(f"{ROOT}.flow_runs"),
                            {"run_name": flow_run.name, "run_id": str(flow_run.id), "run_kind": "flow", **extra})


def task_run_logger(task_run: Any, task: Any = None, flow_run: Any = None, flow: Any = None,
                    **extra: Any) -> logging.LoggerAdapter:
    """A logger whose records carry `task_run`'s name and id (Prefect's `task_run_logger`)."""
    setup_logging()
    return RunLoggerAdapter(logging.getLogger(f"{ROOT}.task_runs"),
                            {"run_name": task_run.name, "run_id": str(task_run.id), "run_kind": "task", **extra})


__all__ = ["get_logger", "get_run_logger", "flow_run_logger", "task_run_logger"]
