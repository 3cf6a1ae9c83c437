"""The current flow run, as `prefect.runtime.flow_run`: `id`, `name`, `flow_name`, `flow_version`,
`parameters`, `tags`, `scheduled_start_time`, `run_count`, `parent_flow_run_id`, `parent_deployment_id`.
Inside a task run (also on a remote worker) the flow run is the one the task run belongs to. Every attribute
is None (or empty) when not available; it never raises."""
from __future__ import annotations

import datetime as _dt
from typing import Any

from ..context import flow_run_ctx, task_run_ctx
from ._mock import attribute


def _run() -> Any:
    ctx = flow_run_ctx.get()
    return ctx.flow_run if ctx is not None else None


def get_id() -> str | None:
    run = _run()
    if run is not None:
        return str(run.id)
    tctx = task_run_ctx.get()
    fid = tctx.task_run.flow_run_id if tctx is not None else None
    return str(fid) if fid is not None else None


def get_name() -> str | None:
    run = _run()
    return run.name if run is not None else None


def get_flow_name() -> str | None:
    run = _run()
    return run.flow_name if run is not None else None


def get_flow_version() -> str | None:
    run = _run()
    return run.flow_version if run is not None else None


def get_parameters() -> dict[str, Any]:
    ctx = flow_run_ctx.get()
    if ctx is not None:
        return dict(ctx.parameters)
    tctx = task_run_ctx.get()
    return dict(tctx.flow_parameters) if tctx is not None else {}


def get_tags() -> list[str]:
    run = _run()
    return sorted(run.tags) if run is not None else []


def get_scheduled_start_time() -> _dt.datetime:
    """When the run was expected to start; now when no run is known (as Prefect)."""
    run = _run()
    ts = (getattr(run, "expected_start_ts", None) or getattr(run, "start_ts", None)) if run is not None else None
    return (_dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc) if ts is not None
            else _dt.datetime.now(_dt.timezone.utc))


def get_run_count() -> int:
    run = _run()
    return run.run_count if run is not None else 0


def get_parent_flow_run_id() -> str | None:
    run = _run()
    pid = getattr(run, "parent_flow_run_id", None) if run is not None else None
    return str(pid) if pid is not None else None


def get_parent_deployment_id() -> str | None:
    """The deployment of the top-level run this (sub)flow run belongs to, when that is a deployment's run."""
    from ..context import deployment_run

    spec, run = deployment_run.get(), _run()
    if spec is None or spec.deployment_id is None or run is None or run.id == spec.id:
        return None
    return str(spec.deployment_id)


_GETTERS = {"id": get_id, "name": get_name, "flow_name": get_flow_name, "flow_version": get_flow_version,
            "parameters": get_parameters, "tags": get_tags, "scheduled_start_time": get_scheduled_start_time,
            "run_count": get_run_count, "parent_flow_run_id": get_parent_flow_run_id,
            "parent_deployment_id": get_parent_deployment_id}


def __getattr__(name: str) -> Any:
    return attribute("flow_run", name, _GETTERS)


__all__ = list(_GETTERS)
