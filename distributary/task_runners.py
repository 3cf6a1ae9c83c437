"""Prefect's module path for task runners (`from distributary.task_runners import ThreadPoolTaskRunner`)."""
from __future__ import annotations

from typing import Any

from .runners import TaskRunner
from .runners import __getattr__ as _runner_attr


def __getattr__(name: str) -> Any:
    return _runner_attr(name)


# The runners are loaded lazily by __getattr__ (so `import distributary` stays light).
__all__ = ["TaskRunner", "ThreadPoolTaskRunner", "ProcessPoolTaskRunner", "DaskTaskRunner", "RayTaskRunner"]  # noqa: F822
