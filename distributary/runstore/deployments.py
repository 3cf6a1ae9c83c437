"""Deployments in the run store: the deployment and schedule rows, flow runs created from a deployment, and the
scheduler's writes (exactly once through the `(flow_id, idempotency_key)` unique index).

`DeploymentStorage` is mixed into `SqlRunStorage`; it uses its engine and its flow-run reader. Every method is
one transaction, so the API server can put routes straight over them.
"""
from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..errors import ConfigurationError, ObjectNotFound
from ..runs import flow_run_name
from ..schemas import objects as O
from ..states import FINAL_TYPES, StateType
from .batch import flow_id_for
from .models import TABLES
from .work_queues import DEFAULT_QUEUE, ensure_queue, queue_for_run

flow_t, flow_run_t, state_t = TABLES["flow"], TABLES["flow_run"], TABLES["run_state"]
deployment_t, schedule_t = TABLES["deployment"], TABLES["deployment_schedule"]

SCHEDULED = StateType.SCHEDULED.value
CANCELLING = StateType.CANCELLING.value
FINAL = {t.value for t in FINAL_TYPES}
# How far ahead the scheduler creates runs (Prefect's defaults): at most MAX_RUNS and MAX_AHEAD, and at least
# MIN_RUNS or everything within MIN_AHEAD.
MAX_RUNS, MIN_RUNS = 100, 3
MAX_AHEAD, MIN_AHEAD = dt.timedelta(days=100), dt.timedelta(hours=1)
LATE_AFTER = 15.0  # seconds past its scheduled time a run that has not started becomes Late
SCHEDULE_CHUNK = 100  # deployments per scheduler transaction (each locked while its runs are inserted)


def _ts(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)


def _epoch(value: dt.datetime | float | None, default: float | None = None) -> float | None:
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp()


def _upcoming(schedule: Any, start: dt.datetime, max_runs: int, min_runs: int, max_ahead: dt.timedelta,
              min_ahead: dt.timedelta) -> list[dt.datetime]:
    """The times to have runs for: every one within `min_ahead`, and at least `min_runs` within `max_ahead`, at
    most `max_runs` (only these dates are computed: cron arithmetic is the scheduler's main cost)."""
    near = schedule.get_dates(max_runs, start=start, end=start + min_ahead + dt.timedelta(microseconds=1))
    if len(near) >= min_runs:
        return near
    return schedule.get_dates(min(min_runs, max_runs), start=start, end=start + max_ahead)


def split_name(full_name: str) -> tuple[str, str]:
    """`"flow/deployment"` -> ("flow", "deployment"), or a clear error."""
    flow_name, sep, name = str(full_name).partition("/")
    if not sep or not flow_name or not name:
        raise ConfigurationError(f"{full_name!r} is not a deployment name: use 'flow-name/deployment-name' "
                                 "(`distributary deployment ls` lists them)")
    return flow_name, name


def _insert(dialect: str, table: Any) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


class DeploymentStorage:
    """Deployments, schedules and deployment runs (mixed into `SqlRunStorage`)."""

    engine: Any
    dialect: str
    if TYPE_CHECKING:  # provided by SqlRunStorage
        def _read(self) -> sa.Connection: ...

        def _flow_run(self, r: Any) -> O.FlowRun: ...

        def read_flow_run(self, flow_run_id: uuid.UUID | str) -> O.FlowRun: ...

        def set_flow_run_state(self, flow_run_id: uuid.UUID | str, state: Any, force: bool = False) -> O.State: ...

    # -- deployments ---------------------------------------------------------------------------------------------
    def create_deployment(self, *, flow_name: str, name: str, entrypoint: str | None = None, path: str | None = None,
                          description: str | None = None, version: str | None = None,
                          parameters: dict[str, Any] | None = None, tags: Sequence[str] | None = None,
                          paused: bool = False, schedules: Sequence[Any] | None = None,
                          concurrency_limit: int | None = None, collision_strategy: str | None = None,
                          work_pool_name: str | None = None, work_queue_name: str | None = None,
                          job_variables: dict[str, Any] | None = None,
                          parameter_openapi_schema: dict[str, Any] | None = None,
                          enforce_parameter_schema: bool = True) -> O.Deployment:
        """Create the deployment `flow_name/name`, or update it when it exists (as `flow.serve()` does on every
        start). `schedules` (`distributary.schedules.Schedule` objects) replace its schedules; runs already
        scheduled by schedules that did not change are kept. `parameter_openapi_schema` is the flow's
        (`deployments.parameters.parameter_schema`); with `enforce_parameter_schema` a run's parameters must
        validate against it. A `work_queue_name` the pool lacks is created in it."""
        now = time.time()
        fid = flow_id_for(flow_name)
        if work_pool_name and not work_queue_name:
            work_queue_name = DEFAULT_QUEUE
        values = {"entrypoint": entrypoint, "path": path, "description": description, "version": version,
                  "parameters": dict(parameters or {}), "tags": sorted(set(tags or ())), "paused": bool(paused),
                  "concurrency_limit": concurrency_limit,
                  "collision_strategy": collision_strategy if concurrency_limit else None,
                  "work_pool_name": work_pool_name, "work_queue_name": work_queue_name,
                  "job_variables": dict(job_variables or {}), "parameter_openapi_schema": parameter_openapi_schema,
                  "enforce_parameter_schema": bool(enforce_parameter_schema), "updated": now}
        with self.engine.begin() as conn:
            conn.execute(_insert(self.dialect, flow_t).values(id=fid, name=flow_name, created=now)
                         .on_conflict_do_nothing(index_elements=["id"]))
            ensure_queue(conn, work_pool_name, work_queue_name)  # a queue the pool lacks is created (as Prefect)
            row = conn.execute(sa.select(deployment_t.c.id, deployment_t.c.parameters).where(
                deployment_t.c.flow_name == flow_name, deployment_t.c.name == name).with_for_update()).first()
            if row is None:
                did = str(uuid.uuid4())
                conn.execute(_insert(self.dialect, deployment_t).values(
                    id=did, name=name, flow_id=fid, flow_name=flow_name, created=now, **values)
                    .on_conflict_do_nothing(index_elements=["flow_name", "name"]))
                did = conn.execute(sa.select(deployment_t.c.id).where(
                    deployment_t.c.flow_name == flow_name, deployment_t.c.name == name)).scalar_one()
            else:
                did = row.id
                conn.execute(sa.update(deployment_t).where(deployment_t.c.id == did).values(**values))
                if (row.parameters or {}) != values["parameters"]:
                    self._drop_future_runs(conn, did)  # their parameters came from the old defaults
            if schedules is not None:
                self._replace_schedules(conn, did, schedules, now)
            if paused:
                self._drop_future_runs(conn, did)
        return self.read_deployment(did)

    def _deployment(self, r: Any, schedules: list[O.DeploymentSchedule]) -> O.Deployment:
        return O.Deployment(
            id=r.id, name=r.name, flow_id=r.flow_id, flow_name=r.flow_name, entrypoint=r.entrypoint, path=r.path,
            description=r.description, version=r.version, parameters=r.parameters or {}, tags=r.tags or [],
            paused=bool(r.paused), schedules=schedules, concurrency_limit=r.concurrency_limit,
            concurrency_options=O.ConcurrencyOptions(collision_strategy=r.collision_strategy)
            if r.collision_strategy else None, work_pool_name=r.work_pool_name, work_queue_name=r.work_queue_name,
            job_variables=r.job_variables or {}, parameter_openapi_schema=r.parameter_openapi_schema,
            enforce_parameter_schema=bool(r.enforce_parameter_schema), last_polled=_ts(r.last_polled), created=_ts(r.created),
            updated=_ts(r.updated))

    def read_deployments(self, names: Iterable[str] | None = None, ids: Iterable[Any] | None = None,
                         limit: int | None = None, offset: int = 0) -> list[O.Deployment]:
        """Deployments by flow name then name; `names` are `flow/deployment` names."""
        q = sa.select(deployment_t)
        if names is not None:
            pairs = [split_name(n) for n in names]
            q = q.where(sa.or_(*[sa.and_(deployment_t.c.flow_name == f, deployment_t.c.name == d)
                                 for f, d in pairs]) if pairs else sa.false())
        if ids is not None:
            q = q.where(deployment_t.c.id.in_([str(i) for i in ids]))
        q = q.order_by(deployment_t.c.flow_name, deployment_t.c.name).offset(offset or 0).limit(limit)
        with self._read() as conn:
            rows = list(conn.execute(q))
            scheds = self._schedules(conn, [r.id for r in rows])
        return [self._deployment(r, scheds.get(r.id, [])) for r in rows]

    def read_deployment(self, deployment_id: uuid.UUID | str) -> O.Deployment:
        got = self.read_deployments(ids=[deployment_id])
        if not got:
            raise ObjectNotFound(f"no deployment with id {deployment_id} in the run store")
        return got[0]

    def read_deployment_by_name(self, name: str) -> O.Deployment:
        """The deployment `flow-name/deployment-name`."""
        got = self.read_deployments(names=[name])
        if not got:
            raise ObjectNotFound(f"no deployment named {name!r} in the run store (`distributary deployment ls` "
                                 "lists them; `flow.serve(...)` creates one)")
        return got[0]

    def update_deployment(self, deployment_id: uuid.UUID | str, **values: Any) -> O.Deployment:
        """Change fields of a deployment (`paused=`, `parameters=`, `tags=`, `description=`, ...). Pausing or
        changing the default parameters removes its future auto-scheduled runs (the scheduler makes new ones)."""
        allowed = {"paused", "parameters", "tags", "description", "version", "concurrency_limit",
                   "collision_strategy", "entrypoint", "path", "job_variables", "work_pool_name", "work_queue_name",
                   "last_polled", "parameter_openapi_schema", "enforce_parameter_schema"}
        unknown = set(values) - allowed
        if unknown:
            raise ConfigurationError(f"cannot update deployment field(s) {sorted(unknown)}: valid are "
                                     f"{sorted(allowed)}")
        did = str(deployment_id)
        if "last_polled" in values:
            values["last_polled"] = _epoch(values["last_polled"])
        with self.engine.begin() as conn:
            n = conn.execute(sa.update(deployment_t).where(deployment_t.c.id == did).values(
                updated=time.time(), **values)).rowcount
            if not n:
                raise ObjectNotFound(f"no deployment with id {deployment_id} in the run store")
            if values.get("paused") or "parameters" in values:
                self._drop_future_runs(conn, did)
        return self.read_deployment(did)

    def delete_deployment(self, deployment_id: uuid.UUID | str) -> None:
        """Delete a deployment, its schedules and its runs that have not started; runs that started are kept."""
        did = str(deployment_id)
        with self.engine.begin() as conn:
            if not conn.execute(sa.delete(deployment_t).where(deployment_t.c.id == did)).rowcount:
                raise ObjectNotFound(f"no deployment with id {deployment_id} in the run store")
            conn.execute(sa.delete(schedule_t).where(schedule_t.c.deployment_id == did))
            gone = sa.select(flow_run_t.c.id).where(flow_run_t.c.deployment_id == did,
                                                    flow_run_t.c.state_type == SCHEDULED)
            conn.execute(sa.delete(state_t).where(state_t.c.run_id.in_(gone)))
            conn.execute(sa.delete(flow_run_t).where(flow_run_t.c.deployment_id == did,
                                                     flow_run_t.c.state_type == SCHEDULED))

    # -- schedules -----------------------------------------------------------------------------------------------
    def _schedules(self, conn: sa.Connection, ids: list[str]) -> dict[str, list[O.DeploymentSchedule]]:
        out: dict[str, list[O.DeploymentSchedule]] = {}
        if not ids:
            return out
        q = sa.select(schedule_t).where(schedule_t.c.deployment_id.in_(ids)).order_by(schedule_t.c.created,
                                                                                      schedule_t.c.id)
        for r in conn.execute(q):
            out.setdefault(r.deployment_id, []).append(O.DeploymentSchedule(
                id=r.id, deployment_id=r.deployment_id, schedule=r.schedule, active=bool(r.active),
                parameters=r.parameters or {}, slug=r.slug, created=_ts(r.created)))
        return out

    def read_deployment_schedules(self, deployment_id: uuid.UUID | str) -> list[O.DeploymentSchedule]:
        with self._read() as conn:
            return self._schedules(conn, [str(deployment_id)]).get(str(deployment_id), [])

    def set_deployment_schedules(self, deployment_id: uuid.UUID | str, schedules: Sequence[Any]) -> O.Deployment:
        """Replace a deployment's schedules, and with them (in the same transaction) its future auto-scheduled
        runs of schedules that changed: a scheduler never leaves a run of an old schedule behind."""
        did = str(deployment_id)
        with self.engine.begin() as conn:
            self._lock_deployment(conn, did, write=True)
            self._replace_schedules(conn, did, schedules, time.time())
        return self.read_deployment(did)

    def update_deployment_schedule(self, deployment_id: uuid.UUID | str, schedule_id: uuid.UUID | str, *,
                                   schedule: Any = None, active: bool | None = None,
                                   parameters: dict[str, Any] | None = None,
                                   slug: str | None = None) -> O.DeploymentSchedule:
        """Change one schedule in place (it keeps its id, as in Prefect): the fields given change, and its future
        auto-scheduled runs are removed in the same transaction (the scheduler makes the new ones; the other
        schedules' runs stay)."""
        did, sid = str(deployment_id), str(schedule_id)
        values: dict[str, Any] = {k: v for k, v in (("active", active), ("parameters", parameters), ("slug", slug))
                                  if v is not None}
        if schedule is not None:
            values["schedule"] = schedule.to_dict()
        with self.engine.begin() as conn:
            self._lock_deployment(conn, did, write=True)
            where = (schedule_t.c.id == sid, schedule_t.c.deployment_id == did)
            if not conn.execute(sa.select(schedule_t.c.id).where(*where)).first():
                raise ObjectNotFound(f"deployment {did} has no schedule {sid}")
            if values:
                conn.execute(sa.update(schedule_t).where(*where).values(**values))
                self._drop_future_runs(conn, did, schedule_ids=[sid])
        return next(s for s in self.read_deployment_schedules(did) if str(s.id) == sid)

    def _lock_deployment(self, conn: sa.Connection, did: str, write: bool = False) -> Any:
        """Serialise schedule edits with the scheduler's inserts: on PostgreSQL a row lock on the deployment
        (SQLite writers are serialised by BEGIN IMMEDIATE already)."""
        if write:
            if not conn.execute(sa.update(deployment_t).where(deployment_t.c.id == did).values(
                    updated=time.time())).rowcount:
                raise ObjectNotFound(f"no deployment with id {did} in the run store")
            return None
        return conn.execute(sa.select(deployment_t).where(deployment_t.c.id == did).with_for_update()).first()

    def _replace_schedules(self, conn: sa.Connection, did: str, schedules: Sequence[Any], now: float) -> None:
        old = {self._schedule_key(r.schedule, r.active, r.parameters, r.slug): r.id
               for r in conn.execute(sa.select(schedule_t).where(schedule_t.c.deployment_id == did))}
        keep: set[str] = set()
        rows = []
        for i, s in enumerate(schedules):
            sched = s.as_schedule() if isinstance(s, O.DeploymentSchedule) else s
            key = self._schedule_key(sched.to_dict(), sched.active, sched.parameters, sched.slug)
            if key in old and old[key] not in keep:
                keep.add(old[key])  # unchanged: its scheduled runs stay valid
                continue
            rows.append({"id": str(uuid.uuid4()), "deployment_id": did, "schedule": sched.to_dict(),
                         "active": bool(sched.active), "parameters": dict(sched.parameters or {}),
                         "slug": sched.slug, "created": now + i * 1e-6})
        dropped = [sid for sid in old.values() if sid not in keep]
        if dropped:
            conn.execute(sa.delete(schedule_t).where(schedule_t.c.id.in_(dropped)))
            self._drop_future_runs(conn, did, schedule_ids=dropped)
        if rows:
            conn.execute(schedule_t.insert(), rows)

    @staticmethod
    def _schedule_key(schedule: dict[str, Any], active: Any, parameters: Any, slug: Any) -> str:
        import json

        return json.dumps([schedule, bool(active), parameters or {}, slug], sort_keys=True, default=str)

    def _drop_future_runs(self, conn: sa.Connection, did: str, schedule_ids: Sequence[str] | None = None) -> int:
        """Delete the deployment's auto-scheduled runs that have not started (of these schedules, or all)."""
        c = flow_run_t.c
        where = [c.deployment_id == did, c.auto_scheduled.is_(True), c.state_type == SCHEDULED]
        if schedule_ids is not None:
            where.append(sa.or_(*[c.idempotency_key.like(f"scheduled {did} {sid} %") for sid in schedule_ids]))
        conn.execute(sa.delete(state_t).where(state_t.c.run_id.in_(sa.select(c.id).where(*where))))
        return int(conn.execute(sa.delete(flow_run_t).where(*where)).rowcount or 0)

    # -- flow runs of deployments --------------------------------------------------------------------------------
    def _run_row(self, dep: Any, *, parameters: dict[str, Any] | None, tags: Iterable[str] | None,
                 scheduled_time: float, idempotency_key: str | None, auto_scheduled: bool,
                 job_variables: dict[str, Any] | None, now: float, queue: tuple[str | None, str | None],
                 state_name: str = "Scheduled", message: str | None = None) -> dict[str, Any]:
        """The row of a new run of `dep`, waiting in `queue` ((name, id): `work_queues.queue_for_run`)."""
        rid = uuid.uuid4()
        return {"id": str(rid), "name": flow_run_name(rid), "flow_id": dep.flow_id, "flow_name": dep.flow_name,
                "flow_version": dep.version, "parameters": {**(dep.parameters or {}), **(parameters or {})},
                "tags": sorted(set(dep.tags or ()) | set(tags or ())), "run_count": 0,
                "expected_start_time": scheduled_time, "total_run_time": 0.0, "state_type": SCHEDULED,
                "state_name": state_name, "state_message": message, "state_ts": now, "created": now,
                "deployment_id": dep.id, "idempotency_key": idempotency_key, "auto_scheduled": auto_scheduled,
                "work_pool_name": dep.work_pool_name, "job_variables": {**(dep.job_variables or {}),
                                                                         **(job_variables or {})},
                "work_queue_name": queue[0], "work_queue_id": queue[1]}

    def _insert_runs(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> list[str]:
        """Insert runs in bulk, skipping any whose idempotency key exists (INSERT ... ON CONFLICT DO NOTHING, on
        SQLite and PostgreSQL alike, sent as multi-row statements by SQLAlchemy's insertmanyvalues); the ids
        inserted."""
        # RETURNING, not rowcount: psycopg reports no row count for a skipped ON CONFLICT insert
        if not rows:
            return []
        stmt = (_insert(self.dialect, flow_run_t).on_conflict_do_nothing(index_elements=["flow_id", "idempotency_key"])
                .returning(flow_run_t.c.id))
        inserted = [r.id for r in conn.execute(stmt, rows)] if len(rows) > 1 else [
            r.id for r in conn.execute(stmt, rows[0])]
        if inserted:
            by_id = {r["id"]: r for r in rows}
            conn.execute(state_t.insert(), [
                {"run_id": rid, "type": SCHEDULED, "name": by_id[rid]["state_name"],
                 "message": by_id[rid]["state_message"], "timestamp": by_id[rid]["state_ts"], "result_ref": None}
                for rid in inserted])
        return inserted

    def create_flow_run_from_deployment(self, deployment_id: uuid.UUID | str, *,
                                        parameters: dict[str, Any] | None = None, tags: Iterable[str] | None = None,
                                        scheduled_time: dt.datetime | None = None,
                                        idempotency_key: str | None = None,
                                        job_variables: dict[str, Any] | None = None,
                                        name: str | None = None,
                                        enforce_parameter_schema: bool | None = None) -> O.FlowRun:
        """A `Scheduled` run of the deployment (now, or at `scheduled_time`; named `name` or a generated name).
        With an `idempotency_key` already used for this flow, the existing run is returned and nothing is
        created. When the deployment enforces its parameter schema (or `enforce_parameter_schema=True` asks for
        this run), parameters that do not validate against it are a `ParameterTypeError` naming the field."""
        from .parameter_check import check_parameters

        now = time.time()
        with self.engine.begin() as conn:
            dep = conn.execute(sa.select(deployment_t).where(deployment_t.c.id == str(deployment_id))).first()
            if dep is None:
                raise ObjectNotFound(f"no deployment with id {deployment_id} in the run store")
            enforce = dep.enforce_parameter_schema if enforce_parameter_schema is None else enforce_parameter_schema
            if enforce:
                check_parameters({**(dep.parameters or {}), **(parameters or {})}, dep.parameter_openapi_schema,
                                 f"{dep.flow_name}/{dep.name}")
            row = self._run_row(dep, parameters=parameters, tags=tags, scheduled_time=_epoch(scheduled_time, now) or now,
                                idempotency_key=idempotency_key, auto_scheduled=False, job_variables=job_variables,
                                now=now, queue=queue_for_run(conn, dep.work_pool_name, dep.work_queue_name))
            if name:
                row["name"] = name
            if not self._insert_runs(conn, [row]):
                got = conn.execute(sa.select(flow_run_t).where(flow_run_t.c.flow_id == dep.flow_id,
                                                               flow_run_t.c.idempotency_key == idempotency_key)).first()
                return self._flow_run(got)
        return self.read_flow_run(row["id"])

    def rename_flow_run(self, flow_run_id: uuid.UUID | str, name: str) -> None:
        with self.engine.begin() as conn:
            if not conn.execute(sa.update(flow_run_t).where(flow_run_t.c.id == str(flow_run_id))
                                .values(name=name)).rowcount:
                raise ObjectNotFound(f"no flow run with id {flow_run_id} in the run store")

    def cancel_flow_run(self, flow_run_id: uuid.UUID | str) -> O.FlowRun:
        """Cancel a run: one that has not started ends `Cancelled` at once; one that is running becomes
        `Cancelling` (the process running it stops it and marks it `Cancelled`). A finished run is an error."""
        rid = str(flow_run_id)
        now = time.time()
        c = flow_run_t.c
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(c.state_type, c.state_name).where(c.id == rid)).first()
            if row is None:
                raise ObjectNotFound(f"no flow run with id {flow_run_id} in the run store")
            if row.state_type in FINAL:
                raise ConfigurationError(f"flow run {flow_run_id} already finished ({row.state_name}): nothing to "
                                         "cancel")
            # not started yet: Cancelled at once, unless a runner claimed it meanwhile (then: Cancelling)
            done = conn.execute(sa.update(flow_run_t).where(c.id == rid, c.state_type == SCHEDULED).values(
                state_type=StateType.CANCELLED.value, state_name="Cancelled", state_ts=now,
                state_message="Cancelled before it started.")).rowcount
            kind, name = (StateType.CANCELLED.value, "Cancelled") if done else (CANCELLING, "Cancelling")
            if not done:
                conn.execute(sa.update(flow_run_t).where(c.id == rid).values(
                    state_type=kind, state_name=name, state_ts=now, state_message=None))
            conn.execute(state_t.insert(), [{"run_id": rid, "type": kind, "name": name, "message": None,
                                             "timestamp": now, "result_ref": None}])
        return self.read_flow_run(rid)

    def propose_flow_run_state(self, flow_run_id: uuid.UUID | str, state: Any,
                               force: bool = False) -> O.OrchestrationResult:
        """`set_state` with Prefect's answers for a cancel: `Cancelling` proposed for a run that has not started
        makes it `Cancelled` (REJECT: nothing runs that could be stopped), for a running one `Cancelling` (ACCEPT;
        the process running it stops it), for a finished run nothing (ABORT, with the reason). Any other state,
        or `force`, is recorded as proposed."""
        if state.type != StateType.CANCELLING or force:
            return O.OrchestrationResult(state=self.set_flow_run_state(flow_run_id, state, force=force))
        try:
            run = self.cancel_flow_run(flow_run_id)
        except ConfigurationError as exc:
            return O.OrchestrationResult(state=None, status="ABORT", details={"type": "abort_details",
                                                                            "reason": str(exc)})
        if run.state_type == StateType.CANCELLED:
            return O.OrchestrationResult(state=run.state, status="REJECT", details={
                "type": "reject_details", "reason": "The flow run had not started: it is Cancelled."})
        return O.OrchestrationResult(state=run.state)

    def schedule_runs(self, deployment_id: uuid.UUID | str, now: dt.datetime | None = None,
                      max_runs: int = MAX_RUNS, min_runs: int = MIN_RUNS, max_ahead: dt.timedelta = MAX_AHEAD,
                      min_ahead: dt.timedelta = MIN_AHEAD) -> int:
        """Create the deployment's upcoming auto-scheduled runs; how many were new (see `schedule_many`)."""
        return self.schedule_many([deployment_id], now=now, max_runs=max_runs, min_runs=min_runs,
                                  max_ahead=max_ahead, min_ahead=min_ahead)

    def schedule_many(self, deployment_ids: Iterable[Any] | None = None, now: dt.datetime | None = None,
                      max_runs: int = MAX_RUNS, min_runs: int = MIN_RUNS, max_ahead: dt.timedelta = MAX_AHEAD,
                      min_ahead: dt.timedelta = MIN_AHEAD) -> int:
        """Create the upcoming auto-scheduled runs of these deployments (default: every deployment that is not
        paused); how many were new. Safe to call from any number of processes at once: each run's key is
        `scheduled {deployment} {schedule} {time}`, and the unique index drops a second insert of it. The
        schedules are read under a lock on their deployments in the same transaction, so a schedule replaced
        meanwhile never gets runs. `SCHEDULE_CHUNK` deployments per transaction, their runs in bulk inserts."""
        start = now or dt.datetime.now(dt.timezone.utc)
        t0 = time.time()
        if deployment_ids is None:
            with self._read() as conn:
                ids = [r.id for r in conn.execute(sa.select(deployment_t.c.id).where(deployment_t.c.paused.is_(False))
                                                  .order_by(deployment_t.c.id))]
        else:
            ids = sorted({str(i) for i in deployment_ids})  # one lock order for every scheduler: no deadlock
        made = 0
        for i in range(0, len(ids), SCHEDULE_CHUNK):
            with self.engine.begin() as conn:
                deps = {r.id: r for r in conn.execute(sa.select(deployment_t).where(
                    deployment_t.c.id.in_(ids[i:i + SCHEDULE_CHUNK])).order_by(deployment_t.c.id).with_for_update())}
                scheds = self._schedules(conn, [d for d, r in deps.items() if not r.paused])
                rows = []
                for did, dep_scheds in scheds.items():
                    queue = queue_for_run(conn, deps[did].work_pool_name, deps[did].work_queue_name)
                    for s in dep_scheds:
                        if not s.active:
                            continue
                        for at in _upcoming(s.as_schedule(), start, max_runs, min_runs, max_ahead, min_ahead):
                            rows.append(self._run_row(
                                deps[did], parameters=s.parameters, tags=None, scheduled_time=at.timestamp(),
                                idempotency_key=f"scheduled {did} {s.id} {at.isoformat()}", auto_scheduled=True,
                                job_variables=None, now=t0, queue=queue))
                made += len(self._insert_runs(conn, rows))
        return made

    def read_due_runs(self, deployment_ids: Iterable[Any], before: dt.datetime | float | None = None,
                      limit: int | None = None, after: dt.datetime | float | None = None) -> list[O.FlowRun]:
        """Runs of these deployments waiting to start (Scheduled or Late) whose time has come (or comes before
        `before`; after `after` if given), oldest first."""
        c = flow_run_t.c
        q = sa.select(flow_run_t).where(c.deployment_id.in_([str(i) for i in deployment_ids]),
                                        c.state_type == SCHEDULED,
                                        c.expected_start_time <= _epoch(before, time.time()))
        if after is not None:
            q = q.where(c.expected_start_time > _epoch(after))
        q = q.order_by(c.expected_start_time, c.id).limit(limit)
        with self._read() as conn:
            return [self._flow_run(r) for r in conn.execute(q)]

    def claim_flow_run(self, flow_run_id: uuid.UUID | str, state_name: str = "Pending",
                       message: str | None = None, worker_name: str | None = None) -> bool:
        """Move a Scheduled (or Late) run to Pending, atomically: True for exactly one of several claimants, and
        never beyond its deployment's or its work pool's concurrency limit (a run of a CANCEL_NEW deployment at
        its limit is Cancelled instead; see `claims.py`)."""
        from .claims import claim

        with self.engine.begin() as conn:
            return claim(conn, str(flow_run_id), state_name, message, worker_name)

    def mark_late_runs(self, now: dt.datetime | float | None = None, late_after: float = LATE_AFTER,
                       deployment_ids: Iterable[Any] | None = None) -> int:
        """Runs still `Scheduled` `late_after` seconds past their time become `Late` (still waiting to start)."""
        at = _epoch(now, time.time()) or time.time()
        c = flow_run_t.c
        where = [c.state_type == SCHEDULED, c.state_name == "Scheduled", c.expected_start_time < at - late_after]
        if deployment_ids is not None:
            where.append(c.deployment_id.in_([str(i) for i in deployment_ids]))
        with self.engine.begin() as conn:
            ids = [r.id for r in conn.execute(sa.select(c.id).where(*where))]
            if not ids:
                return 0
            ts = time.time()
            conn.execute(sa.update(flow_run_t).where(c.id.in_(ids), *where).values(state_name="Late", state_ts=ts))
            conn.execute(state_t.insert(), [{"run_id": i, "type": SCHEDULED, "name": "Late", "message": None,
                                             "timestamp": ts, "result_ref": None} for i in ids])
        return len(ids)

    def read_cancelling(self, flow_run_ids: Iterable[Any]) -> set[str]:
        """Which of these runs have been asked to cancel (a `Cancelling` state in their history: the run's own
        process may have written a later state over the row meanwhile)."""
        ids = [str(i) for i in flow_run_ids]
        if not ids:
            return set()
        q = sa.select(state_t.c.run_id).where(state_t.c.run_id.in_(ids), state_t.c.type == CANCELLING)
        with self._read() as conn:
            return {r.run_id for r in conn.execute(q)}

    def count_deployment_runs(self, deployment_id: uuid.UUID | str, state_types: Iterable[str]) -> int:
        c = flow_run_t.c
        q = sa.select(sa.func.count()).select_from(flow_run_t).where(
            c.deployment_id == str(deployment_id), c.state_type.in_(list(state_types)))
        with self._read() as conn:
            return int(conn.execute(q).scalar() or 0)
