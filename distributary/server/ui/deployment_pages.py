"""The web UI's deployment and work-pool pages: lists, a deployment (its schedules, upcoming and recent runs, and
a "Run" form that creates a flow run with parameters) and a work pool (its job template, workers, deployments).

The "Run" form is the UI's one write: a same-origin POST (a form posted from another site is refused), answered
with a redirect to the new run's page."""
from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ...errors import ParameterTypeError
from ...runstore.models import TABLES
from .pages import _page, _storage, _uuid_or_404, html_errors

router = APIRouter(include_in_schema=False)
RECENT = 20   # recent runs on a deployment's or pool's page
UPCOMING = 10


def schedule_text(schedule: dict[str, Any], active: bool = True) -> str:
    kind = schedule.get("type")
    what = (f"cron {schedule.get('cron')}" if kind == "cron" else
            f"every {schedule.get('interval'):g} s" if kind == "interval" else
            f"rrule {schedule.get('rrule')}" if kind == "rrule" else json.dumps(schedule))
    tz = f" ({schedule['timezone']})" if schedule.get("timezone") else ""
    return f"{what}{tz}{'' if active else ' (inactive)'}"


def _recent_runs(st: Any, *, deployment_id: str | None = None, work_pool_name: str | None = None) -> list[Any]:
    """The latest runs (newest first) of a deployment or a pool, not counting those still waiting to start."""
    c = TABLES["flow_run"].c
    q = sa.select(c.id, c.name, c.state_type, c.state_name, c.expected_start_time, c.start_time, c.end_time,
                  c.worker_name, c.parameters).where(c.state_type != "SCHEDULED")
    q = q.where(c.deployment_id == deployment_id) if deployment_id else q.where(c.work_pool_name == work_pool_name)
    with st.engine.connect() as conn:
        return list(conn.execute(q.order_by(c.created.desc()).limit(RECENT)))


def _deployment_or_404(st: Any, deployment_id: str) -> Any:
    did = _uuid_or_404(deployment_id, "deployment")
    try:
        return st.read_deployment(did)
    except LookupError:
        raise HTTPException(404, f"no deployment with id {did} in the run store") from None


@router.get("/deployments", response_class=HTMLResponse)
@html_errors
def deployments(request: Request) -> HTMLResponse:
    deps = _storage(request).read_deployments()
    return _page("deployments.html", "deployments", deployments=deps, schedule_text=schedule_text)


@router.get("/deployments/{deployment_id}", response_class=HTMLResponse)
@html_errors
def deployment(request: Request, deployment_id: str, error: str | None = None) -> HTMLResponse:
    st = _storage(request)
    dep = _deployment_or_404(st, deployment_id)
    upcoming = st.read_due_runs([dep.id], before=time.time() + 3650 * 86400, limit=UPCOMING)
    return _page("deployment.html", "deployments", d=dep, upcoming=upcoming,
                 recent=_recent_runs(st, deployment_id=str(dep.id)), schedule_text=schedule_text,
                 parameters=json.dumps(dep.parameters, indent=2, sort_keys=True), error=error,
                 status=422 if error else 200)


def _same_origin(request: Request) -> bool:
    """A browser sends Origin (or at least Referer) with a form POST: it must name this server."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    return urlsplit(source).netloc == request.headers.get("host")


@router.post("/deployments/{deployment_id}/run", response_class=HTMLResponse)
async def run_deployment(request: Request, deployment_id: str) -> Any:
    """The "Run" button: a Scheduled run now, with the form's parameters (JSON, merged over the defaults)."""
    return _start_run(request, deployment_id, await request.body())


@html_errors
def _start_run(request: Request, deployment_id: str, body: bytes) -> Any:
    if not _same_origin(request):
        raise HTTPException(403, "a run can only be started from this server's own pages")
    st = _storage(request)
    dep = _deployment_or_404(st, deployment_id)
    text = (parse_qs(body.decode("utf-8", "replace")).get("parameters") or [""])[0].strip()
    try:
        params = json.loads(text) if text else {}
        if not isinstance(params, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        return deployment(request, str(dep.id), error=f"Parameters must be a JSON object ({exc}).")
    try:
        run = st.create_flow_run_from_deployment(dep.id, parameters=params)
    except ParameterTypeError as exc:  # the deployment enforces its parameter schema: say which field is wrong
        return deployment(request, str(dep.id), error=str(exc))
    return RedirectResponse(f"/flow-runs/{uuid.UUID(str(run.id))}", status_code=303)


@router.get("/work-pools", response_class=HTMLResponse)
@html_errors
def work_pools(request: Request) -> HTMLResponse:
    st = _storage(request)
    pools = st.read_work_pools()
    workers = {p.name: st.read_workers(p.name) for p in pools}
    return _page("work_pools.html", "work-pools", pools=pools, workers=workers)


@router.get("/work-pools/{name}", response_class=HTMLResponse)
@html_errors
def work_pool(request: Request, name: str) -> HTMLResponse:
    st = _storage(request)
    try:
        pool = st.read_work_pool(name)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    deps = [d for d in st.read_deployments() if d.work_pool_name == name]
    return _page("work_pool.html", "work-pools", pool=pool, workers=st.read_workers(name), deployments=deps,
                 recent=_recent_runs(st, work_pool_name=name),
                 job_template=json.dumps(pool.base_job_template, indent=2, sort_keys=True))
