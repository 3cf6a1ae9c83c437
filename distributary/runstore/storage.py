"""`RunStorage`: the small interface the sink, the client and the CLI use, and `SqlRunStorage`, its one
implementation for SQLite and PostgreSQL (SQLAlchemy Core statements, bulk writes)."""
from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..errors import ObjectNotFound
from ..schemas import filters as F
from ..schemas import objects as O
from ..schemas import sorting as S
from . import db
from .batch import Batch, write_batch
from .compact import result_ref_row
from .deployments import DeploymentStorage
from .work_pools import WorkPoolStorage
from .work_queues import WorkQueueStorage
from .concurrency import ConcurrencyStorage
from .models import TABLES

flow_t, flow_run_t, task_run_t = TABLES["flow"], TABLES["flow_run"], TABLES["task_run"]
state_t, log_t, artifact_t, variable_t = TABLES["run_state"], TABLES["log"], TABLES["artifact"], TABLES["variable"]
RAW_JSON = frozenset({"parameters", "tags", "result_ref", "job_variables"})  # read as text by `*_rows` reads
_FLOW_RUN_ROW_COLUMNS = [sa.cast(col, sa.Text).label(col.name) if col.name in RAW_JSON else col
                         for col in flow_run_t.c if col.name != "flow_name"]


class RunStorage(Protocol):
    """What the run store offers. Reads return `distributary.schemas.objects` models."""

    def write(self, batch: Batch) -> None: ...

    def read_flows(self, flow_filter: F.FlowFilter | None = None, sort: S.FlowSort | None = None,
                   limit: int | None = None, offset: int = 0) -> list[O.Flow]: ...

    def read_flow_runs(self, flow_filter: F.FlowFilter | None = None, flow_run_filter: F.FlowRunFilter | None = None,
                       sort: S.FlowRunSort | None = None, limit: int | None = None,
                       offset: int = 0) -> list[O.FlowRun]: ...

    def read_task_runs(self, flow_run_filter: F.FlowRunFilter | None = None,
                       task_run_filter: F.TaskRunFilter | None = None, sort: S.TaskRunSort | None = None,
                       limit: int | None = None, offset: int = 0) -> list[O.TaskRun]: ...

    def read_states(self, run_id: uuid.UUID | str) -> list[O.State]: ...

    def read_logs(self, log_filter: F.LogFilter | None = None, sort: S.LogSort = S.LogSort.TIMESTAMP_ASC,
                  limit: int | None = None, offset: int = 0) -> list[O.Log]: ...

    def read_artifacts(self, artifact_filter: F.ArtifactFilter | None = None, sort: S.ArtifactSort | None = None,
                       limit: int | None = None, offset: int = 0, latest: bool = False) -> list[O.Artifact]: ...

    def delete_flow_run(self, flow_run_id: uuid.UUID | str) -> None: ...


def _ts(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)


def _epoch(value: dt.datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def _ids(values: Iterable[Any]) -> list[str]:
    return [str(v) for v in values]


def _state(row: Any) -> O.State | None:
    if row.state_type is None:
        return None
    return O.State(type=row.state_type, name=row.state_name, message=row.state_message,
                   timestamp=_ts(row.state_ts), result_ref=row.result_ref)


def _name_clauses(col: Any, f: Any) -> list[Any]:
    out = []
    if f is None:
        return out
    if f.any_ is not None:
        out.append(col.in_(f.any_))
    if getattr(f, "like_", None) is not None:
        out.append(col.like(f"%{f.like_}%"))
    return out


def _time_clauses(col: Any, f: Any) -> list[Any]:
    out = []
    if f is None:
        return out
    if f.before_ is not None:
        out.append(col <= _epoch(f.before_))
    if f.after_ is not None:
        out.append(col >= _epoch(f.after_))
    return out


def _state_clauses(table: Any, f: F._StateFilter | None) -> list[Any]:
    out: list[Any] = []
    if f is None:
        return out
    if f.type is not None:
        if f.type.any_ is not None:
            out.append(table.c.state_type.in_([str(getattr(t, "value", t)).upper() for t in f.type.any_]))
        if f.type.not_any_ is not None:
            out.append(table.c.state_type.not_in([str(getattr(t, "value", t)).upper() for t in f.type.not_any_]))
    if f.name is not None:
        if f.name.any_ is not None:
            out.append(table.c.state_name.in_(f.name.any_))
        if f.name.not_any_ is not None:
            out.append(table.c.state_name.not_in(f.name.not_any_))
    return out


class SqlRunStorage(DeploymentStorage, WorkPoolStorage, WorkQueueStorage, ConcurrencyStorage):
    """The run store on one SQLAlchemy engine (SQLite or PostgreSQL); deployments: `deployments.py`, work pools
    and workers: `work_pools.py`, their queues: `work_queues.py`, concurrency limits: `concurrency.py`."""

    def __init__(self, engine: Engine | None = None, url: str | None = None):
        self.engine = engine or db.get_engine(url)
        self.dialect = self.engine.dialect.name

    # -- writes ------------------------------------------------------------------------------------------
    def write(self, batch: Batch) -> None:
        """Write a batch in one transaction: a few bulk statements per table, through the driver's executemany
        with one SQL text for both backends (`batch.write_batch`); SQLAlchemy's per-row parameter processing
        would cost more than the database itself on 10^5-row batches."""
        with self.engine.begin() as conn:
            cur = conn.connection.driver_connection.cursor()
            try:
                write_batch(cur, self.dialect, batch)
            finally:
                cur.close()

    def _read(self) -> sa.Connection:
        """A connection for reading: on SQLite it does not take the write lock (see `db._create_engine`)."""
        return self.engine.connect().execution_options(distributary_read=True)

    # -- flows -------------------------------------------------------------------------------------------
    def read_flows(self, flow_filter: F.FlowFilter | None = None, sort: S.FlowSort | None = None,
                   limit: int | None = None, offset: int = 0,
                   flow_run_filter: F.FlowRunFilter | None = None) -> list[O.Flow]:
        q = sa.select(flow_t)
        q = q.where(*self._flow_clauses(flow_filter))
        if flow_run_filter is not None:
            sub = sa.select(flow_run_t.c.flow_id).where(*self._flow_run_clauses(flow_run_filter))
            q = q.where(flow_t.c.id.in_(sub))
        order = {S.FlowSort.NAME_ASC: flow_t.c.name.asc(), S.FlowSort.NAME_DESC: flow_t.c.name.desc(),
                 S.FlowSort.UPDATED_DESC: flow_t.c.created.desc()}.get(S.FlowSort(sort) if sort else None,
                                                                      flow_t.c.created.desc())
        q = q.order_by(order, flow_t.c.name).offset(offset or 0).limit(limit)
        with self._read() as conn:
            return [O.Flow(id=r.id, name=r.name, created=_ts(r.created)) for r in conn.execute(q)]

    def count_flows(self, flow_filter: F.FlowFilter | None = None,
                    flow_run_filter: F.FlowRunFilter | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(flow_t).where(*self._flow_clauses(flow_filter))
        if flow_run_filter is not None:
            q = q.where(flow_t.c.id.in_(sa.select(flow_run_t.c.flow_id).where(
                *self._flow_run_clauses(flow_run_filter))))
        with self._read() as conn:
            return int(conn.execute(q).scalar_one())

    def _flow_clauses(self, f: F.FlowFilter | None) -> list[Any]:
        if f is None:
            return []
        out = _name_clauses(flow_t.c.name, f.name)
        if f.id is not None and f.id.any_ is not None:
            out.append(flow_t.c.id.in_(_ids(f.id.any_)))
        return out

    def read_flow(self, flow_id: uuid.UUID | str) -> O.Flow:
        got = self.read_flows(F.FlowFilter(id=F.FlowFilterId(any_=[uuid.UUID(str(flow_id))])))
        if not got:
            raise ObjectNotFound(f"no flow with id {flow_id} in the run store")
        return got[0]

    def read_flow_by_name(self, name: str) -> O.Flow:
        got = self.read_flows(F.FlowFilter(name=F.FlowFilterName(any_=[name])))
        if not got:
            raise ObjectNotFound(f"no flow named {name!r} in the run store")
        return got[0]

    # -- flow runs ---------------------------------------------------------------------------------------
    def _flow_run_clauses(self, f: F.FlowRunFilter | None) -> list[Any]:
        if f is None:
            return []
        c = flow_run_t.c
        out = _name_clauses(c.name, f.name) + _state_clauses(flow_run_t, f.state) + _time_clauses(c.start_time,
                                                                                                  f.start_time)
        if f.id is not None and f.id.any_ is not None:
            out.append(c.id.in_(_ids(f.id.any_)))
        if f.flow_id is not None and f.flow_id.any_ is not None:
            out.append(c.flow_id.in_(_ids(f.flow_id.any_)))
        if f.parent_flow_run_id is not None and f.parent_flow_run_id.any_ is not None:
            out.append(c.parent_flow_run_id.in_(_ids(f.parent_flow_run_id.any_)))
        out += self._tag_clauses(c.tags, f.tags)
        return out

    def _tag_clauses(self, col: Any, f: Any) -> list[Any]:
        if f is None:
            return []
        out = []
        for tag in f.all_ or ():
            # tags are stored as a JSON list of strings: match the quoted element
            out.append(sa.cast(col, sa.Text).like(f'%"{tag}"%'))
        if f.is_null_ is True:
            out.append(sa.or_(col.is_(None), sa.cast(col, sa.Text) == "[]"))
        return out

    def _flow_run(self, r: Any) -> O.FlowRun:
        return O.FlowRun(
            id=r.id, name=r.name, flow_id=r.flow_id, flow_version=r.flow_version, parameters=r.parameters or {},
            tags=r.tags or [], parent_task_run_id=r.parent_task_run_id, parent_flow_run_id=r.parent_flow_run_id,
            run_count=r.run_count, expected_start_time=_ts(r.expected_start_time), start_time=_ts(r.start_time),
            end_time=_ts(r.end_time), total_run_time=dt.timedelta(seconds=r.total_run_time or 0.0),
            state=_state(r), state_type=r.state_type, state_name=r.state_name, created=_ts(r.created),
            deployment_id=r.deployment_id, idempotency_key=r.idempotency_key, auto_scheduled=bool(r.auto_scheduled),
            work_pool_name=r.work_pool_name, job_variables=r.job_variables or {}, worker_name=r.worker_name,
            infrastructure_pid=r.infrastructure_pid, work_queue_name=r.work_queue_name,
            work_queue_id=r.work_queue_id)

    def _flow_runs_where(self, q: sa.Select[Any], flow_filter: F.FlowFilter | None,
                         flow_run_filter: F.FlowRunFilter | None, task_run_filter: F.TaskRunFilter | None
                         ) -> sa.Select[Any]:
        c = flow_run_t.c
        q = q.where(*self._flow_run_clauses(flow_run_filter))
        if flow_filter is not None:
            q = q.where(c.flow_id.in_(sa.select(flow_t.c.id).where(*self._flow_clauses(flow_filter))))
        if task_run_filter is not None:
            q = q.where(c.id.in_(sa.select(task_run_t.c.flow_run_id).where(
                *self._task_run_clauses(task_run_filter))))
        return q

    def count_flow_runs(self, flow_filter: F.FlowFilter | None = None,
                        flow_run_filter: F.FlowRunFilter | None = None,
                        task_run_filter: F.TaskRunFilter | None = None) -> int:
        q = self._flow_runs_where(sa.select(sa.func.count()).select_from(flow_run_t), flow_filter, flow_run_filter,
                                  task_run_filter)
        with self._read() as conn:
            return int(conn.execute(q).scalar_one())

    def _flow_runs_query(self, columns: Sequence[Any], flow_filter: F.FlowFilter | None,
                         flow_run_filter: F.FlowRunFilter | None, sort: S.FlowRunSort | None, limit: int | None,
                         offset: int, task_run_filter: F.TaskRunFilter | None) -> sa.Select[Any]:
        c = flow_run_t.c
        q = self._flow_runs_where(sa.select(*columns), flow_filter, flow_run_filter, task_run_filter)
        sort = S.FlowRunSort(sort) if sort else S.FlowRunSort.ID_DESC
        order = {S.FlowRunSort.START_TIME_ASC: c.start_time.asc(), S.FlowRunSort.START_TIME_DESC: c.start_time.desc(),
                 S.FlowRunSort.EXPECTED_START_TIME_ASC: c.expected_start_time.asc(),
                 S.FlowRunSort.EXPECTED_START_TIME_DESC: c.expected_start_time.desc(),
                 S.FlowRunSort.NAME_ASC: c.name.asc(), S.FlowRunSort.NAME_DESC: c.name.desc(),
                 S.FlowRunSort.END_TIME_DESC: c.end_time.desc()}.get(sort, c.created.desc())
        return q.order_by(order, c.created.desc(), c.id).offset(offset or 0).limit(limit)

    def read_flow_runs(self, flow_filter: F.FlowFilter | None = None, flow_run_filter: F.FlowRunFilter | None = None,
                       sort: S.FlowRunSort | None = None, limit: int | None = None, offset: int = 0,
                       task_run_filter: F.TaskRunFilter | None = None) -> list[O.FlowRun]:
        q = self._flow_runs_query([flow_run_t], flow_filter, flow_run_filter, sort, limit, offset, task_run_filter)
        with self._read() as conn:
            return [self._flow_run(r) for r in conn.execute(q)]

    def read_flow_run_rows(self, flow_filter: F.FlowFilter | None = None,
                           flow_run_filter: F.FlowRunFilter | None = None, sort: S.FlowRunSort | None = None,
                           limit: int | None = None, offset: int = 0,
                           task_run_filter: F.TaskRunFilter | None = None) -> list[Any]:
        """What `read_flow_runs` reads, as database rows with the JSON columns left as JSON text (`RAW_JSON`):
        the server's read path renders them straight to its response, without a model per row."""
        q = self._flow_runs_query(_FLOW_RUN_ROW_COLUMNS, flow_filter, flow_run_filter, sort, limit, offset,
                                  task_run_filter)
        with self._read() as conn:
            return conn.execute(q).all()

    def read_flow_run(self, flow_run_id: uuid.UUID | str) -> O.FlowRun:
        got = self.read_flow_runs(flow_run_filter=F.FlowRunFilter(id=F.FlowRunFilterId(any_=[_uuid(flow_run_id)])))
        if not got:
            raise ObjectNotFound(f"no flow run with id {flow_run_id} in the run store")
        return got[0]

    def delete_flow_run(self, flow_run_id: uuid.UUID | str) -> None:
        """Delete a flow run with its task runs, state histories, logs and artifacts."""
        rid = str(flow_run_id)
        with self.engine.begin() as conn:
            if conn.execute(sa.delete(flow_run_t).where(flow_run_t.c.id == rid)).rowcount == 0:
                raise ObjectNotFound(f"no flow run with id {flow_run_id} in the run store")
            tasks = sa.select(task_run_t.c.id).where(task_run_t.c.flow_run_id == rid)
            conn.execute(sa.delete(state_t).where(sa.or_(state_t.c.run_id == rid, state_t.c.run_id.in_(tasks))))
            conn.execute(sa.delete(task_run_t).where(task_run_t.c.flow_run_id == rid))
            conn.execute(sa.delete(log_t).where(log_t.c.flow_run_id == rid))
            conn.execute(sa.delete(artifact_t).where(artifact_t.c.flow_run_id == rid))

    def set_flow_run_state(self, flow_run_id: uuid.UUID | str, state: Any, force: bool = False) -> O.State:
        """Record `state` (a `distributary.states.State`) as the flow run's current state."""
        self.read_flow_run(flow_run_id)  # raises ObjectNotFound
        ref = result_ref_row(getattr(state, "result_ref", None))
        row = {"run_id": str(flow_run_id), "type": state.type.value, "name": state.name, "message": state.message,
               "timestamp": state.ts, "result_ref": ref}
        with self.engine.begin() as conn:
            conn.execute(state_t.insert(), [row])
            conn.execute(sa.update(flow_run_t).where(flow_run_t.c.id == str(flow_run_id)).values(
                state_type=row["type"], state_name=row["name"], state_message=row["message"],
                state_ts=row["timestamp"], result_ref=ref))
        return O.State(type=row["type"], name=row["name"], message=row["message"], timestamp=_ts(row["timestamp"]),
                       result_ref=ref)

    # -- task runs ---------------------------------------------------------------------------------------
    def _task_run_clauses(self, f: F.TaskRunFilter | None) -> list[Any]:
        if f is None:
            return []
        c = task_run_t.c
        out = _name_clauses(c.name, f.name) + _state_clauses(task_run_t, f.state) + _time_clauses(c.start_time,
                                                                                                  f.start_time)
        if f.id is not None and f.id.any_ is not None:
            out.append(c.id.in_(_ids(f.id.any_)))
        if f.flow_run_id is not None:
            if f.flow_run_id.any_ is not None:
                out.append(c.flow_run_id.in_(_ids(f.flow_run_id.any_)))
            if f.flow_run_id.is_null_ is not None:
                out.append(c.flow_run_id.is_(None) if f.flow_run_id.is_null_ else c.flow_run_id.is_not(None))
        out += self._tag_clauses(c.tags, f.tags)
        return out

    def _task_run(self, r: Any) -> O.TaskRun:
        return O.TaskRun(
            id=r.id, name=r.name, task_key=r.task_key, dynamic_key=r.dynamic_key, cache_key=r.cache_key,
            flow_run_id=r.flow_run_id, task_inputs=r.task_inputs or {}, tags=r.tags or [], run_count=r.run_count,
            start_time=_ts(r.start_time), end_time=_ts(r.end_time),
            total_run_time=dt.timedelta(seconds=r.total_run_time or 0.0), state=_state(r), state_type=r.state_type,
            state_name=r.state_name, created=_ts(r.created))

    def read_task_runs(self, flow_run_filter: F.FlowRunFilter | None = None,
                       task_run_filter: F.TaskRunFilter | None = None, sort: S.TaskRunSort | None = None,
                       limit: int | None = None, offset: int = 0,
                       flow_filter: F.FlowFilter | None = None) -> list[O.TaskRun]:
        c = task_run_t.c
        q = sa.select(task_run_t).where(*self._task_run_clauses(task_run_filter))
        if flow_run_filter is not None or flow_filter is not None:
            sub = sa.select(flow_run_t.c.id).where(*self._flow_run_clauses(flow_run_filter))
            if flow_filter is not None:
                sub = sub.where(flow_run_t.c.flow_id.in_(sa.select(flow_t.c.id).where(
                    *self._flow_clauses(flow_filter))))
            q = q.where(c.flow_run_id.in_(sub))
        sort = S.TaskRunSort(sort) if sort else S.TaskRunSort.ID_DESC
        order = {S.TaskRunSort.EXPECTED_START_TIME_ASC: c.created.asc(),
                 S.TaskRunSort.EXPECTED_START_TIME_DESC: c.created.desc(), S.TaskRunSort.NAME_ASC: c.name.asc(),
                 S.TaskRunSort.NAME_DESC: c.name.desc(), S.TaskRunSort.END_TIME_DESC: c.end_time.desc()}.get(
            sort, c.created.desc())
        q = q.order_by(order, c.id).offset(offset or 0).limit(limit)
        with self._read() as conn:
            return [self._task_run(r) for r in conn.execute(q)]

    def read_task_run(self, task_run_id: uuid.UUID | str) -> O.TaskRun:
        got = self.read_task_runs(task_run_filter=F.TaskRunFilter(id=F.TaskRunFilterId(any_=[_uuid(task_run_id)])))
        if not got:
            raise ObjectNotFound(f"no task run with id {task_run_id} in the run store")
        return got[0]

    def count_task_runs(self, task_run_filter: F.TaskRunFilter | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(task_run_t).where(*self._task_run_clauses(task_run_filter))
        with self._read() as conn:
            return int(conn.execute(q).scalar() or 0)

    def count_states(self) -> int:
        """How many states are recorded (every run's history)."""
        hist = sa.func.json_array_length(task_run_t.c.state_history)
        with self._read() as conn:
            rows = int(conn.execute(sa.select(sa.func.count()).select_from(state_t)).scalar() or 0)
            return rows + int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(hist), 0))).scalar() or 0)

    def read_states(self, run_id: uuid.UUID | str) -> list[O.State]:
        """A run's state history (task run or flow run), oldest first."""
        rid = str(run_id)
        with self._read() as conn:
            hist = conn.execute(sa.select(task_run_t.c.state_history).where(task_run_t.c.id == rid)).scalar()
            if hist:
                return [O.State(type=h[0], name=h[1], message=h[2], timestamp=_ts(h[3]),
                                result_ref=h[4] if len(h) > 4 else None) for h in hist]
            q = sa.select(state_t).where(state_t.c.run_id == rid).order_by(state_t.c.timestamp, state_t.c.id)
            return [O.State(type=r.type, name=r.name, message=r.message, timestamp=_ts(r.timestamp),
                            result_ref=r.result_ref) for r in conn.execute(q)]

    # -- logs --------------------------------------------------------------------------------------------
    def read_logs(self, log_filter: F.LogFilter | None = None, sort: S.LogSort | None = S.LogSort.TIMESTAMP_ASC,
                  limit: int | None = None, offset: int = 0) -> list[O.Log]:
        c = log_t.c
        q = sa.select(log_t)
        f = log_filter
        if f is not None:
            if f.level is not None:
                if f.level.ge_ is not None:
                    q = q.where(c.level >= f.level.ge_)
                if f.level.le_ is not None:
                    q = q.where(c.level <= f.level.le_)
            q = q.where(*_time_clauses(c.timestamp, f.timestamp))
            if f.flow_run_id is not None and f.flow_run_id.any_ is not None:
                q = q.where(c.flow_run_id.in_(_ids(f.flow_run_id.any_)))
            if f.task_run_id is not None:
                if f.task_run_id.any_ is not None:
                    q = q.where(c.task_run_id.in_(_ids(f.task_run_id.any_)))
                if f.task_run_id.is_null_ is not None:
                    q = q.where(c.task_run_id.is_(None) if f.task_run_id.is_null_ else c.task_run_id.is_not(None))
        desc = sort is not None and S.LogSort(sort) == S.LogSort.TIMESTAMP_DESC
        q = q.order_by(c.timestamp.desc() if desc else c.timestamp.asc(), c.id.desc() if desc else c.id.asc())
        q = q.offset(offset or 0).limit(limit)
        with self._read() as conn:
            return [O.Log(id=r.id, name=r.name, level=r.level, message=r.message, timestamp=_ts(r.timestamp),
                          flow_run_id=r.flow_run_id, task_run_id=r.task_run_id) for r in conn.execute(q)]

    # -- artifacts ---------------------------------------------------------------------------------------
    def _artifact_clauses(self, f: F.ArtifactFilter | None) -> list[Any]:
        if f is None:
            return []
        c = artifact_t.c
        out: list[Any] = []
        if f.id is not None and f.id.any_ is not None:
            out.append(c.id.in_(_ids(f.id.any_)))
        if f.key is not None:
            out += _name_clauses(c.key, f.key)
            if f.key.exists_ is not None:
                out.append(c.key.is_not(None) if f.key.exists_ else c.key.is_(None))
        if f.type is not None:
            if f.type.any_ is not None:
                out.append(c.type.in_(f.type.any_))
            if f.type.not_any_ is not None:
                out.append(c.type.not_in(f.type.not_any_))
        if f.flow_run_id is not None and f.flow_run_id.any_ is not None:
            out.append(c.flow_run_id.in_(_ids(f.flow_run_id.any_)))
        if f.task_run_id is not None and f.task_run_id.any_ is not None:
            out.append(c.task_run_id.in_(_ids(f.task_run_id.any_)))
        return out

    def read_artifacts(self, artifact_filter: F.ArtifactFilter | None = None, sort: S.ArtifactSort | None = None,
                       limit: int | None = None, offset: int = 0, latest: bool = False,
                       flow_run_filter: F.FlowRunFilter | None = None,
                       task_run_filter: F.TaskRunFilter | None = None) -> list[O.Artifact]:
        """Artifacts, newest first; `latest=True`: one per key, its newest version (`ArtifactCollection`)."""
        c = artifact_t.c
        q = sa.select(artifact_t).where(*self._artifact_clauses(artifact_filter))
        if flow_run_filter is not None:
            q = q.where(c.flow_run_id.in_(sa.select(flow_run_t.c.id).where(*self._flow_run_clauses(flow_run_filter))))
        if task_run_filter is not None:
            q = q.where(c.task_run_id.in_(sa.select(task_run_t.c.id).where(*self._task_run_clauses(task_run_filter))))
        if latest:
            newest = (sa.select(c.key, sa.func.max(c.created).label("created")).where(c.key.is_not(None))
                      .group_by(c.key).subquery())
            q = q.join(newest, sa.and_(c.key == newest.c.key, c.created == newest.c.created))
        sort = S.ArtifactSort(sort) if sort else S.ArtifactSort.CREATED_DESC
        order = {S.ArtifactSort.UPDATED_DESC: c.updated.desc(), S.ArtifactSort.ID_DESC: c.id.desc(),
                 S.ArtifactSort.KEY_DESC: c.key.desc(), S.ArtifactSort.KEY_ASC: c.key.asc()}.get(sort, c.created.desc())
        q = q.order_by(order, c.created.desc()).offset(offset or 0).limit(limit)
        with self._read() as conn:
            rows = list(conn.execute(q))
        out: list[O.Artifact] = []
        seen: set[str] = set()
        for r in rows:
            fields = dict(id=r.id, key=r.key, type=r.type, description=r.description, data=r.data,
                          flow_run_id=r.flow_run_id, task_run_id=r.task_run_id, created=_ts(r.created),
                          updated=_ts(r.updated))
            if latest:
                if r.key in seen:  # two versions created in the same instant: keep one
                    continue
                seen.add(r.key)
                out.append(O.ArtifactCollection(latest_id=r.id, **fields))
            else:
                out.append(O.Artifact(**fields))
        return out

    def delete_artifacts(self, key: str) -> int:
        """Delete every version of the artifact `key`; how many were deleted."""
        with self.engine.begin() as conn:
            return conn.execute(sa.delete(artifact_t).where(artifact_t.c.key == key)).rowcount

    def delete_artifact(self, artifact_id: uuid.UUID | str) -> None:
        with self.engine.begin() as conn:
            if conn.execute(sa.delete(artifact_t).where(artifact_t.c.id == str(artifact_id))).rowcount == 0:
                raise ObjectNotFound(f"no artifact with id {artifact_id} in the run store")

    # -- variables ---------------------------------------------------------------------------------------
    def read_variables(self, variable_filter: F.VariableFilter | None = None, sort: S.VariableSort | None = None,
                       limit: int | None = None, offset: int = 0) -> list[O.Variable]:
        c = variable_t.c
        q = sa.select(variable_t)
        if variable_filter is not None:
            q = q.where(*_name_clauses(c.name, variable_filter.name), *self._tag_clauses(c.tags, variable_filter.tags))
        sort = S.VariableSort(sort) if sort else S.VariableSort.NAME_ASC
        order = {S.VariableSort.CREATED_DESC: c.created.desc(), S.VariableSort.UPDATED_DESC: c.updated.desc(),
                 S.VariableSort.NAME_DESC: c.name.desc()}.get(sort, c.name.asc())
        q = q.order_by(order).offset(offset or 0).limit(limit)
        with self._read() as conn:
            return [O.Variable(id=r.id, name=r.name, value=r.value, tags=r.tags or [], created=_ts(r.created),
                               updated=_ts(r.updated)) for r in conn.execute(q)]

    def read_variable_by_name(self, name: str) -> O.Variable | None:
        got = self.read_variables(F.VariableFilter(name=F.VariableFilterName(any_=[name])))
        return got[0] if got else None

    def set_variable(self, name: str, value: Any, tags: Sequence[str] | None = None,
                     overwrite: bool = False) -> O.Variable:
        """Create the variable, or replace its value when `overwrite`; ValueError if it exists otherwise."""
        now = time.time()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(variable_t).where(variable_t.c.name == name)).first()
            if row is not None:
                if not overwrite:
                    raise ValueError(f"Variable {name!r} already exists. Use `overwrite=True` to update it.")
                values: dict[str, Any] = {"value": value, "updated": now}
                if tags is not None:
                    values["tags"] = list(tags)
                conn.execute(sa.update(variable_t).where(variable_t.c.name == name).values(**values))
            else:
                conn.execute(variable_t.insert(), [{"id": str(uuid.uuid4()), "name": name, "value": value,
                                                    "tags": list(tags or []), "created": now, "updated": now}])
        got = self.read_variable_by_name(name)
        assert got is not None
        return got

    def delete_variable_by_name(self, name: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(sa.delete(variable_t).where(variable_t.c.name == name)).rowcount > 0


def _uuid(value: Any) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise ObjectNotFound(f"{value!r} is not a run id (a UUID)") from None


_storages: dict[str, SqlRunStorage] = {}


def get_storage(url: str | None = None) -> SqlRunStorage:
    """The process-wide storage of `url` (default: the configured run store)."""
    url = url or db.database_url()
    st = _storages.get(url)
    if st is None:
        st = _storages[url] = SqlRunStorage(db.get_engine(url))
    return st


def reset() -> None:
    """Forget the cached storages and engines (after settings change, in tests)."""
    _storages.clear()
    db.dispose_engines()
