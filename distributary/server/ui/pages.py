"""The web UI's pages (server-rendered HTML at `/`) and the JSON routes they poll (`/api/ui/...`), one router the
server app includes. Run data is read straight from the run store (`queries.py`); nothing here writes."""
from __future__ import annotations

import datetime as dt
import functools
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..deps import get_storage
from . import queries as q
from .render import HERE, render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
TASK_PAGE_SIZE = 100
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}
WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
# Responses carry a content security policy: scripts only from this server, no inline scripts, no plugins.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: http: https:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def _storage(request: Request) -> Any:
    return get_storage(request)


def _page(template: str, nav: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = render(template, nav=nav, now=time.time(), **context)
    return HTMLResponse(html, status_code=status,
                        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"})


def html_errors(route: Callable[..., HTMLResponse]) -> Callable[..., HTMLResponse]:
    """A page's 404 and 422 as a page (with the navigation) instead of the API's JSON."""
    @functools.wraps(route)
    def page(*args: Any, **kwargs: Any) -> HTMLResponse:
        try:
            return route(*args, **kwargs)
        except HTTPException as exc:
            title = "Not found" if exc.status_code == 404 else "Cannot show this page"
            return _page("error.html", "", status=exc.status_code, title=title, message=str(exc.detail))
    return page


def _uuid_or_404(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise HTTPException(404, f"{value!r} is not a {what} id (a UUID)") from None


def _time(value: str | None, name: str) -> float | None:
    """A `datetime-local` or ISO value from a filter form, read as UTC."""
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(422, f"{name}: {value!r} is not a date and time (use YYYY-MM-DDTHH:MM)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


def _row_or_404(read: Any, st: Any, ident: str, what: str) -> Any:
    """The row `read(st, id)` returns for `ident`; 404 if `ident` is no UUID or nothing has that id."""
    rid = _uuid_or_404(ident, what)
    row = read(st, rid)
    if row is None:
        raise HTTPException(404, f"no {what} with id {rid} in the run store")
    return row


# -- static files -------------------------------------------------------------------------------------------
@router.get("/ui-static/{name}")
def static(name: str) -> Response:
    path = HERE / "static" / name
    if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
        raise HTTPException(404, f"no static file {name!r}")
    return Response(path.read_bytes(), media_type=STATIC_TYPES[path.suffix],
                    headers={"Cache-Control": "max-age=86400"})  # pages link it with a digest


# -- dashboard ----------------------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
@html_errors
def dashboard(request: Request, window: str = "24h") -> HTMLResponse:
    st = _storage(request)
    seconds = WINDOWS.get(window, WINDOWS["24h"])
    until = time.time()
    since = until - seconds
    hist = q.flow_runs_over_time(st, since, until, buckets=48)
    counts = q.flow_run_state_counts(st, since=since)
    return _page("dashboard.html", "dashboard", window=window, windows=list(WINDOWS), hist=hist,
                 counts=q.ordered_states(counts), total=sum(counts.values()),
                 state_order=q.STATE_ORDER,
                 failures=q.recent_failures(st, limit=10), all_counts=q.ordered_states(q.flow_run_state_counts(st)))


# -- flow runs ----------------------------------------------------------------------------------------------
def _flow_run_query(flow: str, state: str, tag: str, since: str | None, until: str | None,
                    parent: str = "") -> q.FlowRunQuery:
    return q.FlowRunQuery(flow=flow, state=state, tag=tag.strip(), since=_time(since, "since"),
                          until=_time(until, "until"), parent=parent)


def _flow_runs_context(request: Request, flow: str, state: str, tag: str, since: str | None, until: str | None,
                       page: int) -> dict[str, Any]:
    query = _flow_run_query(flow, state, tag, since, until)
    page = max(page, 1)
    rows, total = q.flow_run_page(_storage(request), query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    pages = max(1, -(-total // PAGE_SIZE))
    return {"rows": rows, "total": total, "page": page, "pages": pages, "page_size": PAGE_SIZE}


@router.get("/flow-runs", response_class=HTMLResponse)
@html_errors
def flow_runs(request: Request, flow: str = "", state: str = "", tag: str = "", since: str | None = None,
              until: str | None = None, page: int = 1) -> HTMLResponse:
    ctx = _flow_runs_context(request, flow, state, tag, since, until, page)
    f = {"flow": flow, "state": state, "tag": tag, "since": since or "", "until": until or ""}
    qs = urlencode({k: v for k, v in f.items() if v})
    return _page("flow_runs.html", "flow-runs", flows=q.flow_names(_storage(request)), states=q.STATE_ORDER, f=f,
                 query=request.url.query, pager_base=f"/flow-runs?{qs + '&' if qs else ''}", **ctx)


@router.get("/api/ui/flow-runs")
def flow_runs_json(request: Request, flow: str = "", state: str = "", tag: str = "", since: str | None = None,
                   until: str | None = None, page: int = 1) -> JSONResponse:
    ctx = _flow_runs_context(request, flow, state, tag, since, until, page)
    return JSONResponse({"total": ctx["total"], "page": ctx["page"], "pages": ctx["pages"],
                         "ids": [r.id for r in ctx["rows"]], "html": render("_flow_run_rows.html", **ctx)})


def _summary(st: Any, run: Any) -> dict[str, Any]:
    counts = q.task_run_counts(st, run.id)
    return {"run": run, "counts": counts, "final": q.is_final(run.state_type)}


@router.get("/flow-runs/{flow_run_id}", response_class=HTMLResponse)
@html_errors
def flow_run(request: Request, flow_run_id: str) -> HTMLResponse:
    st = _storage(request)
    run = _row_or_404(q.flow_run_row, st, flow_run_id, "flow run")
    rid = run.id
    parent_task = q.task_run_row(st, run.parent_task_run_id) if run.parent_task_run_id else None
    parent_id = run.parent_flow_run_id or (parent_task.flow_run_id if parent_task is not None else None)
    parent = q.flow_run_row(st, parent_id) if parent_id else None
    tasks, task_total = q.task_run_page(st, rid, limit=TASK_PAGE_SIZE)
    logs = q.logs(st, flow_run_id=rid, limit=200)
    return _page("flow_run.html", "flow-runs", states=q.flow_run_states(st, rid), parent=parent,
                 parent_task=parent_task, subflows=q.subflow_runs(st, rid), tasks=tasks, task_total=task_total,
                 task_offset=0, task_page_size=TASK_PAGE_SIZE, graph_max_runs=q.GRAPH_MAX_RUNS,
                 logs=logs, last_log_id=logs[-1].id if logs else 0,
                 artifacts=q.artifacts_of(st, flow_run_id=rid), **_summary(st, run))


@router.get("/api/ui/flow-runs/{flow_run_id}/summary")
def flow_run_summary(request: Request, flow_run_id: str) -> JSONResponse:
    st = _storage(request)
    run = _row_or_404(q.flow_run_row, st, flow_run_id, "flow run")
    rid = run.id
    ctx = _summary(st, run)
    return JSONResponse({"state_type": run.state_type, "state_name": run.state_name, "final": ctx["final"],
                         "task_total": ctx["counts"]["total"], "by_state": ctx["counts"]["by_state"],
                         "header_html": render("_run_header.html", **ctx),
                         "counts_html": render("_task_counts.html", **ctx),
                         "states_html": render("_states.html", states=q.flow_run_states(st, rid)),
                         "artifacts_html": render("_artifacts.html", artifacts=q.artifacts_of(st, flow_run_id=rid))})


@router.get("/api/ui/flow-runs/{flow_run_id}/task-runs")
def task_runs_json(request: Request, flow_run_id: str, state: str = "", task: str = "", sort: str = "start",
                   offset: int = Query(0, ge=0), limit: int = Query(TASK_PAGE_SIZE, ge=1, le=500)) -> JSONResponse:
    st = _storage(request)
    rid = _uuid_or_404(flow_run_id, "flow run")
    rows, total = q.task_run_page(st, rid, state=state, task_key=task, limit=limit, offset=offset, sort=sort)
    return JSONResponse({"total": total, "offset": offset, "limit": limit, "ids": [r.id for r in rows],
                         "html": render("_task_run_rows.html", tasks=rows)})


@router.get("/api/ui/flow-runs/{flow_run_id}/timeline")
def timeline_json(request: Request, flow_run_id: str, start: float | None = None, end: float | None = None,
                  buckets: int = Query(200, ge=1, le=q.MAX_BUCKETS)) -> JSONResponse:
    rid = _uuid_or_404(flow_run_id, "flow run")
    tl = q.timeline(_storage(request), rid, start=start, end=end, buckets=buckets)
    return JSONResponse(tl.to_json())


@router.get("/api/ui/flow-runs/{flow_run_id}/graph")
def graph_json(request: Request, flow_run_id: str) -> JSONResponse:
    rid = _uuid_or_404(flow_run_id, "flow run")
    return JSONResponse(q.run_graph(_storage(request), rid))


@router.get("/api/ui/logs")
def logs_json(request: Request, flow_run_id: str = "", task_run_id: str = "", level: int = 0,
              after_id: int | None = None, limit: int = Query(200, ge=1, le=1000)) -> JSONResponse:
    if not flow_run_id and not task_run_id:
        raise HTTPException(422, "give flow_run_id or task_run_id")
    rows = q.logs(_storage(request), flow_run_id=flow_run_id or None, task_run_id=task_run_id or None, level=level,
                  after_id=after_id, limit=limit)
    return JSONResponse({"count": len(rows), "last_id": rows[-1].id if rows else after_id,
                         "html": render("_log_rows.html", logs=rows)})


# -- task runs ----------------------------------------------------------------------------------------------
@router.get("/task-runs/{task_run_id}", response_class=HTMLResponse)
@html_errors
def task_run(request: Request, task_run_id: str) -> HTMLResponse:
    st = _storage(request)
    row = _row_or_404(q.task_run_row, st, task_run_id, "task run")
    tid = row.id
    flow_run_row = q.flow_run_row(st, row.flow_run_id) if row.flow_run_id else None
    logs = q.logs(st, task_run_id=tid, limit=200)
    states = [{"type": h[0], "name": h[1], "message": h[2], "timestamp": h[3]} for h in (row.state_history or [])]
    return _page("task_run.html", "flow-runs", task=row, flow_run=flow_run_row, states=states,
                 subflow=q.subflow_of_task_run(st, tid), logs=logs, last_log_id=logs[-1].id if logs else 0,
                 artifacts=q.artifacts_of(st, task_run_id=tid), final=q.is_final(row.state_type))


# -- flows, artifacts, variables ----------------------------------------------------------------------------
@router.get("/flows", response_class=HTMLResponse)
@html_errors
def flows(request: Request) -> HTMLResponse:
    return _page("flows.html", "flows", flows=q.flows_with_counts(_storage(request)))


@router.get("/artifacts", response_class=HTMLResponse)
@html_errors
def artifacts(request: Request, page: int = 1) -> HTMLResponse:
    page = max(page, 1)
    rows, total = q.artifact_keys(_storage(request), limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return _page("artifacts.html", "artifacts", rows=rows, total=total, page=page,
                 pages=max(1, -(-total // PAGE_SIZE)))


@router.get("/artifacts/key/{key:path}", response_class=HTMLResponse)
@html_errors
def artifact_key(request: Request, key: str) -> HTMLResponse:
    versions = q.artifact_versions(_storage(request), key)
    if not versions:
        raise HTTPException(404, f"no artifact with key {key!r} in the run store")
    return _page("artifact_key.html", "artifacts", key=key, versions=versions)


@router.get("/artifacts/{artifact_id}", response_class=HTMLResponse)
@html_errors
def artifact(request: Request, artifact_id: str) -> HTMLResponse:
    row = _row_or_404(q.artifact_row, _storage(request), artifact_id, "artifact")
    return _page("artifact.html", "artifacts", a=row)


@router.get("/variables", response_class=HTMLResponse)
@html_errors
def variables(request: Request) -> HTMLResponse:
    return _page("variables.html", "variables", variables=_storage(request).read_variables(limit=1000))


@router.get("/api/ui/task-runs/{task_run_id}/state")
def task_run_state(request: Request, task_run_id: str) -> JSONResponse:
    row = _row_or_404(q.task_run_row, _storage(request), task_run_id, "task run")
    return JSONResponse({"state_type": row.state_type, "state_name": row.state_name,
                         "final": q.is_final(row.state_type)})
