"""`/deployments`: register (create or update by flow and name), read, change, pause, delete deployments, their
schedules, and runs of them (Prefect's `create_flow_run`, the seed's `curl` form; `schedule`; and
`get_scheduled_flow_runs`, which `serve()` processes poll).

`flow.serve()`, `flow.deploy()` and `distributary deploy` with DISTRIBUTARY_API_URL set register through these
routes; a run created here is picked up by the `serve()` process or worker polling the server.
"""
from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ...errors import ConfigurationError, ObjectNotFound
from ...schemas import objects as O
from ..deps import Storage
from ._common import Body, Page, flow_run_json, respond

router = APIRouter(prefix="/deployments", tags=["deployments"])
ACTIVE = ["PENDING", "RUNNING", "CANCELLING"]  # the states a concurrency limit counts


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Any(_Part):
    any_: list[str] | None = None


class _Ids(_Part):
    any_: list[uuid.UUID] | None = None
    not_any_: list[uuid.UUID] | None = None


class _Names(_Part):
    any_: list[str] | None = None
    like_: str | None = None  # a case-insensitive substring, as in Prefect


class _Tags(_Part):
    all_: list[str] | None = None
    any_: list[str] | None = None
    is_null_: bool | None = None


class DeploymentFilter(_Part):
    """Prefect's deployment filter (`deployments` part): ids, names, tags, work queue names."""
    id: _Ids | None = None
    name: _Names | None = None
    tags: _Tags | None = None
    work_queue_name: _Any | None = None


class FlowPart(_Part):
    id: _Ids | None = None
    name: _Names | None = None


class WorkPoolPart(_Part):
    id: _Ids | None = None
    name: _Any | None = None
    type: _Any | None = None


class DeploymentsFilter(Page):
    flows: FlowPart | None = None
    deployments: DeploymentFilter | None = None
    work_pools: WorkPoolPart | None = None
    sort: Literal["CREATED_DESC", "UPDATED_DESC", "NAME_ASC", "NAME_DESC", "CONCURRENCY_LIMIT_ASC",
                  "CONCURRENCY_LIMIT_DESC"] | None = None


def _ids_match(f: _Ids | None, value: Any) -> bool:
    return f is None or ((f.any_ is None or value in f.any_) and (f.not_any_ is None or value not in f.not_any_))


def _names_match(f: _Names | None, value: str) -> bool:
    return f is None or ((f.any_ is None or value in f.any_) and
                         (f.like_ is None or f.like_.lower() in value.lower()))


def _tags_match(f: _Tags | None, tags: list[str]) -> bool:
    return f is None or ((f.all_ is None or set(f.all_) <= set(tags)) and
                         (f.any_ is None or bool(set(f.any_) & set(tags))) and
                         (f.is_null_ is None or f.is_null_ == (not tags)))


def _matches(d: O.Deployment, body: DeploymentsFilter, pools: dict[str, O.WorkPool]) -> bool:
    fl, dep, wp = body.flows or FlowPart(), body.deployments or DeploymentFilter(), body.work_pools
    if not (_ids_match(fl.id, d.flow_id) and _names_match(fl.name, d.flow_name) and _ids_match(dep.id, d.id)
            and _names_match(dep.name, d.name) and _tags_match(dep.tags, d.tags)):
        return False
    queues = dep.work_queue_name.any_ if dep.work_queue_name is not None else None
    if queues is not None and d.work_queue_name not in queues:
        return False
    if wp is None:
        return True
    pool = pools.get(d.work_pool_name or "")
    names = wp.name.any_ if wp.name is not None else None
    types = wp.type.any_ if wp.type is not None else None
    return ((names is None or d.work_pool_name in names) and (types is None or (pool is not None and pool.type in types))
            and (wp.id is None or (pool is not None and _ids_match(wp.id, pool.id))))


SORTS: dict[str, tuple[Callable[[O.Deployment], Any], bool]] = {
    "NAME_ASC": (lambda d: (d.name, d.flow_name), False), "NAME_DESC": (lambda d: (d.name, d.flow_name), True),
    "CREATED_DESC": (lambda d: d.created.timestamp() if d.created else 0.0, True),
    "UPDATED_DESC": (lambda d: d.updated.timestamp() if d.updated else 0.0, True),
    "CONCURRENCY_LIMIT_ASC": (lambda d: d.concurrency_limit or 0, False),
    "CONCURRENCY_LIMIT_DESC": (lambda d: d.concurrency_limit or 0, True)}


class DeploymentFlowRunCreate(Body):
    name: str | None = None
    parameters: dict[str, Any] | None = None
    tags: list[str] | None = None
    idempotency_key: str | None = None
    job_variables: dict[str, Any] | None = None
    state: dict[str, Any] | None = None  # Prefect's client may send a Scheduled state with its scheduled_time
    enforce_parameter_schema: bool | None = None  # this run only: over the deployment's setting
    # sent by Prefect's client (empty unless its caller set them); nothing here uses them
    context: dict[str, Any] | None = None
    labels: dict[str, Any] | None = None
    infrastructure_document_id: uuid.UUID | None = None
    empirical_policy: dict[str, Any] | None = None
    parent_task_run_id: uuid.UUID | None = None


def prefect_schedule(schedule: dict[str, Any]) -> dict[str, Any]:
    """A stored schedule in Prefect's shape: its kind is given by its keys (`{"cron": ..., "timezone": ...}`),
    with no `type` and no null fields (Prefect's client refuses both)."""
    return {k: v for k, v in schedule.items() if k != "type" and v is not None}


def _schedule_json(s: dict[str, Any]) -> dict[str, Any]:
    return {**s, "schedule": prefect_schedule(s["schedule"]), "updated": s.get("updated") or s.get("created")}


def limit_json(dep: dict[str, Any], active_slots: int) -> dict[str, Any] | None:
    """A deployment's concurrency limit as Prefect 3 returns it (`global_concurrency_limit`, the limit named
    `deployment:{id}`; its active slots are the deployment's Pending, Running and Cancelling runs), or None."""
    if not dep["concurrency_limit"]:
        return None
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"deployment:{dep['id']}")), "name": f"deployment:{dep['id']}",
            "created": dep["created"], "updated": dep["updated"], "active": True, "limit": dep["concurrency_limit"],
            "active_slots": active_slots, "slot_decay_per_second": 0.0}


def deployment_json(dep: O.Deployment, storage: Any) -> dict[str, Any]:
    """A deployment in Prefect 3's shape (`DeploymentResponse`), with its limit's occupied slots from `storage`."""
    d = dep.model_dump(mode="json")
    d["concurrency_options"] = d.get("concurrency_options")
    d["schedules"] = [_schedule_json(s) for s in d["schedules"]]
    d["global_concurrency_limit"] = limit_json(
        d, storage.count_deployment_runs(dep.id, ACTIVE) if dep.concurrency_limit else 0)
    return d


def _scheduled_time(state: dict[str, Any] | None) -> dt.datetime | None:
    when = ((state or {}).get("state_details") or {}).get("scheduled_time")
    return dt.datetime.fromisoformat(when.replace("Z", "+00:00")) if isinstance(when, str) else None


@router.post("/filter")
def read_deployments(storage: Storage, body: DeploymentsFilter | None = None) -> JSONResponse:
    """Prefect's deployment filter: by flow (ids, names), deployment (ids, names, tags, work queues) and work
    pool (names, types, ids), sorted as asked (by flow and name by default)."""
    body = body or DeploymentsFilter()
    if body.model_dump(exclude_none=True, exclude={"limit", "offset"}) == {}:
        deps = storage.read_deployments(limit=body.limit, offset=body.offset)
    else:
        wp = body.work_pools
        pools = {p.name: p for p in storage.read_work_pools()} if wp is not None and (wp.type or wp.id) else {}
        deps = [d for d in storage.read_deployments() if _matches(d, body, pools)]
        if body.sort is not None:
            key, reverse = SORTS[body.sort]
            deps.sort(key=key, reverse=reverse)
        deps = deps[body.offset:body.offset + body.limit]
    return respond([deployment_json(d, storage) for d in deps])


class ScheduleCreate(Body):
    """One schedule in Prefect's shape: `{"schedule": {"cron": "0 9 * * *", "timezone": ...}, "active": true,
    "parameters": {...}, "slug": ...}` (the schedule's kind is read from its keys: cron, interval, rrule)."""
    schedule: dict[str, Any]
    active: bool = True
    parameters: dict[str, Any] | None = None
    slug: str | None = None
    max_scheduled_runs: int | None = None  # accepted from Prefect clients; the scheduler's bounds apply
    OPAQUE = Body.OPAQUE | {"schedule"}

    def to_schedule(self) -> Any:
        from ...schedules import SCHEDULE_KINDS, schedule_from_dict

        data = dict(self.schedule)
        if "type" not in data:
            kinds = [k for k in SCHEDULE_KINDS if k in data]
            if len(kinds) != 1:
                raise ConfigurationError(f"a schedule needs exactly one of {', '.join(SCHEDULE_KINDS)}; got "
                                         f"{sorted(data)}")
            data["type"] = kinds[0]
        data = {k: v for k, v in data.items() if v is not None or k == "timezone"}
        try:
            return schedule_from_dict(data, active=self.active, parameters=self.parameters, slug=self.slug)
        except TypeError as exc:
            raise ConfigurationError(f"bad schedule {self.schedule}: {exc}") from None


class ConcurrencyOptionsBody(Body):
    collision_strategy: str = "ENQUEUE"


class _DeploymentFields(Body):
    """The fields Prefect's DeploymentCreate and DeploymentUpdate share."""
    schedules: list[ScheduleCreate] | None = None
    concurrency_limit: int | None = Field(default=None, ge=1)
    concurrency_options: ConcurrencyOptionsBody | None = None
    parameters: dict[str, Any] | None = None
    tags: list[str] | None = None
    description: str | None = None
    version: str | None = None
    entrypoint: str | None = None
    path: str | None = None
    work_pool_name: str | None = None
    work_queue_name: str | None = None
    job_variables: dict[str, Any] | None = None
    parameter_openapi_schema: dict[str, Any] | None = None
    enforce_parameter_schema: bool | None = None  # None on create: true, as in Prefect 3
    # sent by Prefect's client; nothing here uses them
    labels: dict[str, Any] | None = None
    pull_steps: list[Any] | None = None
    version_info: dict[str, Any] | None = None
    OPAQUE = Body.OPAQUE | {"job_variables", "parameter_openapi_schema"}


class DeploymentCreate(_DeploymentFields):
    """Prefect's DeploymentCreate; `flow_name` may stand for `flow_id` (distributary's clients send it)."""
    name: str
    flow_id: uuid.UUID | None = None
    flow_name: str | None = None
    paused: bool = False
    storage_document_id: uuid.UUID | None = None
    infrastructure_document_id: uuid.UUID | None = None


class DeploymentUpdate(_DeploymentFields):
    """Prefect's DeploymentUpdate: the fields given change; `schedules` given replace the deployment's."""
    paused: bool | None = None


class ScheduleUpdate(Body):
    active: bool | None = None
    schedule: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None
    slug: str | None = None
    max_scheduled_runs: int | None = None


class ScheduleRuns(Body):
    """`POST /deployments/{id}/schedule`: make its upcoming runs now (the scheduler does this on its own)."""
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    min_time: float | None = None   # seconds
    min_runs: int | None = None
    max_runs: int | None = None


class ScheduledRunsQuery(Body):
    """`POST /deployments/get_scheduled_flow_runs` (what a `serve()` process polls): due runs of these
    deployments, oldest first. `scheduled_after` is distributary's: only runs due after it."""
    deployment_ids: list[uuid.UUID]
    scheduled_before: dt.datetime | None = None
    scheduled_after: dt.datetime | None = None
    limit: int | None = Field(default=None, ge=0, le=10_000)


def _limit_options(body: DeploymentCreate | DeploymentUpdate) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "concurrency_limit" in body.model_fields_set:
        out["concurrency_limit"] = body.concurrency_limit
        out["collision_strategy"] = ((body.concurrency_options.collision_strategy if body.concurrency_options
                                      else "ENQUEUE") if body.concurrency_limit else None)
    elif body.concurrency_options is not None:
        out["collision_strategy"] = body.concurrency_options.collision_strategy
    strategy = out.get("collision_strategy")
    if strategy not in (None, "ENQUEUE", "CANCEL_NEW"):
        raise ConfigurationError(f"collision_strategy must be ENQUEUE or CANCEL_NEW, got {strategy!r}")
    return out


@router.post("/", status_code=201)
def create_deployment(body: DeploymentCreate, storage: Storage) -> JSONResponse:
    """Create the deployment, or update it when its flow has one of that name (Prefect's upsert)."""
    if body.flow_name:
        flow_name = body.flow_name
    elif body.flow_id is not None:
        flow_name = storage.read_flow(body.flow_id).name  # 404 for an unknown flow
    else:
        raise ConfigurationError("a deployment needs its flow: give flow_id (POST /flows/ creates one) or flow_name")
    if body.work_pool_name:
        storage.read_work_pool(body.work_pool_name)  # 404 naming the command that creates it
    opts = _limit_options(body)
    dep = storage.create_deployment(
        flow_name=flow_name, name=body.name, entrypoint=body.entrypoint, path=body.path,
        description=body.description, version=body.version, parameters=body.parameters, tags=body.tags,
        paused=body.paused, schedules=None if body.schedules is None else [s.to_schedule() for s in body.schedules],
        concurrency_limit=opts.get("concurrency_limit"), collision_strategy=opts.get("collision_strategy"),
        work_pool_name=body.work_pool_name, work_queue_name=body.work_queue_name, job_variables=body.job_variables,
        parameter_openapi_schema=body.parameter_openapi_schema,
        enforce_parameter_schema=body.enforce_parameter_schema is not False)
    return respond(deployment_json(dep, storage), 201)


@router.get("/name/{flow_name}/{deployment_name}")
def read_deployment_by_name(flow_name: str, deployment_name: str, storage: Storage) -> JSONResponse:
    return respond(deployment_json(storage.read_deployment_by_name(f"{flow_name}/{deployment_name}"), storage))


@router.get("/{deployment_id}")
def read_deployment(deployment_id: uuid.UUID, storage: Storage) -> JSONResponse:
    return respond(deployment_json(storage.read_deployment(deployment_id), storage))


@router.patch("/{deployment_id}", status_code=204)
def update_deployment(deployment_id: uuid.UUID, body: DeploymentUpdate, storage: Storage) -> Response:
    fields = {k: getattr(body, k) for k in body.model_fields_set
              if k in ("paused", "parameters", "tags", "description", "version", "entrypoint", "path",
                       "job_variables", "work_pool_name", "parameter_openapi_schema", "enforce_parameter_schema")}
    fields.update(_limit_options(body))
    if fields.get("work_pool_name"):
        storage.read_work_pool(fields["work_pool_name"])
    if fields:
        storage.update_deployment(deployment_id, **fields)
    else:
        storage.read_deployment(deployment_id)  # 404 for an unknown id
    if body.schedules is not None:
        storage.set_deployment_schedules(deployment_id, [s.to_schedule() for s in body.schedules])
    return Response(status_code=204)


@router.delete("/{deployment_id}", status_code=204)
def delete_deployment(deployment_id: uuid.UUID, storage: Storage) -> Response:
    storage.delete_deployment(deployment_id)
    return Response(status_code=204)


@router.post("/{deployment_id}/pause_deployment", status_code=204)
@router.post("/{deployment_id}/set_schedule_inactive", status_code=204)
def pause_deployment(deployment_id: uuid.UUID, storage: Storage) -> Response:
    """Pause: no more scheduled runs, and its future auto-scheduled runs are removed."""
    storage.update_deployment(deployment_id, paused=True)
    return Response(status_code=204)


@router.post("/{deployment_id}/resume_deployment", status_code=204)
@router.post("/{deployment_id}/set_schedule_active", status_code=204)
def resume_deployment(deployment_id: uuid.UUID, storage: Storage) -> Response:
    storage.update_deployment(deployment_id, paused=False)
    return Response(status_code=204)


@router.get("/{deployment_id}/schedules")
def read_schedules(deployment_id: uuid.UUID, storage: Storage) -> JSONResponse:
    storage.read_deployment(deployment_id)
    return respond([_schedule_json(s.model_dump(mode="json")) for s in storage.read_deployment_schedules(deployment_id)])


@router.post("/{deployment_id}/schedules", status_code=201)
def create_schedules(deployment_id: uuid.UUID, body: list[ScheduleCreate], storage: Storage) -> JSONResponse:
    """Add schedules to the deployment (its other schedules and their runs are kept); the schedules added."""
    before = {s.id for s in storage.read_deployment_schedules(deployment_id)}
    kept = [s.as_schedule() for s in storage.read_deployment_schedules(deployment_id)]
    dep = storage.set_deployment_schedules(deployment_id, kept + [s.to_schedule() for s in body])
    return respond([_schedule_json(s.model_dump(mode="json")) for s in dep.schedules if s.id not in before], 201)


def _one_schedule(storage: Any, deployment_id: uuid.UUID, schedule_id: uuid.UUID) -> list[Any]:
    scheds = storage.read_deployment_schedules(deployment_id)
    if not any(s.id == schedule_id for s in scheds):
        raise ObjectNotFound(f"deployment {deployment_id} has no schedule {schedule_id}")
    return scheds


@router.patch("/{deployment_id}/schedules/{schedule_id}", status_code=204)
def update_schedule(deployment_id: uuid.UUID, schedule_id: uuid.UUID, body: ScheduleUpdate,
                    storage: Storage) -> Response:
    """Change one schedule; it keeps its id (its future runs are replaced atomically; the other schedules'
    runs stay)."""
    sched = None
    if body.schedule is not None:
        sched = ScheduleCreate(schedule=body.schedule).to_schedule()
    storage.update_deployment_schedule(deployment_id, schedule_id, schedule=sched, active=body.active,
                                       parameters=body.parameters, slug=body.slug)
    return Response(status_code=204)


@router.delete("/{deployment_id}/schedules/{schedule_id}", status_code=204)
def delete_schedule(deployment_id: uuid.UUID, schedule_id: uuid.UUID, storage: Storage) -> Response:
    scheds = _one_schedule(storage, deployment_id, schedule_id)
    storage.set_deployment_schedules(deployment_id, [s.as_schedule() for s in scheds if s.id != schedule_id])
    return Response(status_code=204)


@router.post("/{deployment_id}/schedule", status_code=201)
def schedule_deployment(deployment_id: uuid.UUID, storage: Storage, body: ScheduleRuns | None = None) -> JSONResponse:
    """Create the deployment's upcoming runs now (exactly once, whoever else schedules); how many were new."""
    from ...runstore.deployments import MAX_AHEAD, MAX_RUNS, MIN_AHEAD, MIN_RUNS

    body = body or ScheduleRuns()
    start = body.start_time
    max_ahead = (body.end_time - (start or dt.datetime.now(dt.timezone.utc))) if body.end_time else MAX_AHEAD
    made = storage.schedule_many(
        [deployment_id], now=start, max_runs=body.max_runs or MAX_RUNS, min_runs=body.min_runs or MIN_RUNS,
        max_ahead=max_ahead, min_ahead=dt.timedelta(seconds=body.min_time) if body.min_time else MIN_AHEAD)
    return respond({"created": made}, 201)


@router.post("/get_scheduled_flow_runs")
def get_scheduled_flow_runs(body: ScheduledRunsQuery, storage: Storage) -> JSONResponse:
    runs = storage.read_due_runs(body.deployment_ids, before=body.scheduled_before, after=body.scheduled_after,
                                 limit=body.limit)
    return respond([flow_run_json(r) for r in runs])


@router.get("/{deployment_id}/active_runs")
def count_active_runs(deployment_id: uuid.UUID, storage: Storage,
                      state_type: Annotated[list[str], Query()] = ACTIVE) -> JSONResponse:
    """How many of the deployment's runs are in these states (what its concurrency limit counts)."""
    return respond(storage.count_deployment_runs(deployment_id, state_type))


@router.post("/{deployment_id}/create_flow_run", status_code=201)
def create_flow_run(deployment_id: uuid.UUID, storage: Storage,
                    body: DeploymentFlowRunCreate | None = None) -> JSONResponse:
    """A `Scheduled` run of the deployment, its parameters merged over the deployment's defaults; with an
    `idempotency_key` already used, the existing run is returned. Parameters its schema refuses (when it enforces
    the schema) are a 409 naming the field, as Prefect answers."""
    from ...errors import ParameterTypeError

    body = body or DeploymentFlowRunCreate()
    try:
        run = storage.create_flow_run_from_deployment(
            deployment_id, parameters=body.parameters, tags=body.tags, scheduled_time=_scheduled_time(body.state),
            idempotency_key=body.idempotency_key, job_variables=body.job_variables, name=body.name,
            enforce_parameter_schema=body.enforce_parameter_schema)
    except ParameterTypeError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=409)
    return respond(flow_run_json(run), 201)
