"""The current task run, as `prefect.runtime.task_run`: `id`, `name`, `task_name`, `parameters`, `tags`,
`run_count`. Every attribute is None (or empty) outside a task run; it never raises. Works on every runner,
on remote workers too (the task run's context travels with it)."""
from __future__ import annotations

from typing import Any

from ..context import task_run_ctx
from ._mock import attribute


def _run() -> Any:
    ctx = task_run_ctx.get()
    return ctx.task_run if ctx is not None else None


def get_id() -> str | None:
    run = _run()
    return str(run.id) if run is not None else None


def get_name() -> str | None:
    run = _run()
    return run.name if run is not None else None


def get_task_name() -> str | None:
    ctx = task_run_ctx.get()
    return ctx.task.name if ctx is not None else None


def get_parameters() -> dict[str, Any]:
    ctx = task_run_ctx.get()
    return dict(ctx.parameters) if ctx is not None else {}


def get_tags() -> list[str]:
    run = _run()
    return sorted(run.tags) if run is not None else []


def get_run_count() -> int:
    run = _run()
    return run.run_count if run is not None else 0


_GETTERS = {"id": get_id, "name": get_name, "task_name": get_task_name, "parameters": get_parameters,
            "tags": get_tags, "run_count": get_run_count}


def __getattr__(name: str) -> Any:
    return attribute("task_run", name, _GETTERS)


__all__ = list(_GETTERS)
