"""The REST API: one router per resource, on Prefect's paths and JSON shapes, mounted under `/api`."""
from __future__ import annotations

from fastapi import APIRouter


def api_router() -> APIRouter:
    """Every resource router of the API (paths relative to `/api`)."""
    from . import (
        admin,
        artifacts,
        automations,
        concurrency_limits,
        deployments,
        flow_run_control,
        flow_runs,
        flows,
        ingest,
        logs,
        task_runs,
        variables,
        work_pools,
        work_queues,
    )

    root = APIRouter()
    for router in (admin.router, flows.router, flow_runs.router, flow_runs.states_router, task_runs.router,
                   task_runs.states_router, logs.router, artifacts.router, variables.router, deployments.router,
                   work_pools.router, work_queues.pool_router, work_queues.router, flow_run_control.router,
                   concurrency_limits.router, concurrency_limits.tag_router, automations.router, ingest.router):
        root.include_router(router)
    return root
