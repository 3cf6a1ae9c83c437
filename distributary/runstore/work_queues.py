"""Work queues in the run store: the queues of a work pool (priority, pause, concurrency limit), the `default`
queue every pool has, and which queue a deployment's run waits in.

`WorkQueueStorage` is mixed into `SqlRunStorage`; queues are named within their pool (`pool/queue`)."""
from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ..errors import ConfigurationError, ObjectNotFound
from ..schemas import objects as O
from ..states import StateType
from .models import TABLES

pool_t, queue_t, flow_run_t = TABLES["work_pool"], TABLES["work_queue"], TABLES["flow_run"]
DEFAULT_QUEUE = "default"
SCHEDULED = StateType.SCHEDULED.value


def _ts(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)


def _epoch(value: dt.datetime | float | None) -> float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).timestamp()


def _make_room(conn: sa.Connection, pool_id: str, priority: int, queue_id: str | None = None) -> None:
    """Priorities stay unique within a pool, as in Prefect: a queue put at a priority another queue has moves
    that queue and every later one down by one."""
    others = [queue_t.c.work_pool_id == pool_id, queue_t.c.id != (queue_id or "")]
    if conn.execute(sa.select(queue_t.c.id).where(*others, queue_t.c.priority == priority)).first() is not None:
        conn.execute(sa.update(queue_t).where(*others, queue_t.c.priority >= priority).values(
            priority=queue_t.c.priority + 1))


def add_queue(conn: sa.Connection, pool_id: str, name: str, *, priority: int | None = None,
              description: str | None = None, concurrency_limit: int | None = None, paused: bool = False) -> str:
    """Insert a queue into the pool in `conn`'s transaction; its id. Without a priority it goes last (the
    pool's largest priority + 1), as in Prefect."""
    if priority is None:
        top = conn.execute(sa.select(sa.func.max(queue_t.c.priority)).where(queue_t.c.work_pool_id == pool_id)).scalar()
        priority = 1 if top is None else int(top) + 1
    if priority < 1:
        raise ConfigurationError(f"a work queue's priority is 1 or more (1 is claimed first), got {priority}")
    if concurrency_limit is not None and concurrency_limit < 0:
        raise ConfigurationError(f"a work queue's concurrency limit is 0 or more, got {concurrency_limit}")
    _make_room(conn, pool_id, priority)
    now = time.time()
    qid = str(uuid.uuid4())
    conn.execute(queue_t.insert().values(id=qid, name=name, work_pool_id=pool_id, description=description,
                                         priority=priority, concurrency_limit=concurrency_limit, paused=paused,
                                         created=now, updated=now))
    return qid


def queue_for_run(conn: sa.Connection, work_pool_name: str | None, work_queue_name: str | None
                  ) -> tuple[str | None, str | None]:
    """(queue name, queue id) a new run of a deployment on this pool waits in: the named queue, or the pool's
    default queue when it has none of that name (or none is named)."""
    if work_pool_name is None:
        return work_queue_name, None
    j = queue_t.join(pool_t, pool_t.c.id == queue_t.c.work_pool_id)
    if work_queue_name:
        got = conn.execute(sa.select(queue_t.c.name, queue_t.c.id).select_from(j).where(
            pool_t.c.name == work_pool_name, queue_t.c.name == work_queue_name)).first()
        if got is not None:
            return got.name, got.id
    got = conn.execute(sa.select(queue_t.c.name, queue_t.c.id).select_from(j).where(
        pool_t.c.name == work_pool_name, queue_t.c.id == pool_t.c.default_queue_id)).first()
    return (got.name, got.id) if got is not None else (work_queue_name, None)


def ensure_queue(conn: sa.Connection, work_pool_name: str | None, work_queue_name: str | None) -> None:
    """Create the queue a deployment names in its pool when the pool exists and has no queue of that name (as
    Prefect's server does when a deployment is created)."""
    if not work_pool_name or not work_queue_name:
        return
    pool = conn.execute(sa.select(pool_t.c.id).where(pool_t.c.name == work_pool_name)).first()
    if pool is None:
        return
    if conn.execute(sa.select(queue_t.c.id).where(queue_t.c.work_pool_id == pool.id,
                                                  queue_t.c.name == work_queue_name)).first() is None:
        add_queue(conn, pool.id, work_queue_name)


class WorkQueueStorage:
    """The queues of work pools (mixed into `SqlRunStorage`)."""

    engine: Any
    dialect: str
    if TYPE_CHECKING:  # provided by SqlRunStorage
        def _read(self) -> sa.Connection: ...

    def _queue(self, r: Any) -> O.WorkQueue:
        return O.WorkQueue(id=r.id, name=r.name, work_pool_id=r.work_pool_id, work_pool_name=r.pool_name,
                           description=r.description, priority=r.priority, concurrency_limit=r.concurrency_limit,
                           is_paused=bool(r.paused), last_polled=_ts(r.last_polled), created=_ts(r.created),
                           updated=_ts(r.updated))

    def _queues_query(self) -> sa.Select[Any]:
        return (sa.select(queue_t, pool_t.c.name.label("pool_name"))
                .select_from(queue_t.join(pool_t, pool_t.c.id == queue_t.c.work_pool_id)))

    def _pool_id(self, conn: sa.Connection, work_pool_name: str) -> Any:
        pool = conn.execute(sa.select(pool_t.c.id, pool_t.c.default_queue_id).where(
            pool_t.c.name == work_pool_name)).first()
        if pool is None:
            raise ObjectNotFound(f"work pool {work_pool_name!r} does not exist: create it with `distributary "
                                 f"work-pool create {work_pool_name} --type process`")
        return pool

    def create_work_queue(self, work_pool_name: str, name: str, *, description: str | None = None,
                          priority: int | None = None, concurrency_limit: int | None = None,
                          paused: bool = False) -> O.WorkQueue:
        """A new queue in the pool (priority 1 is claimed first; without one it goes last)."""
        if not name or "/" in name:
            raise ConfigurationError(f"{name!r} is not a work-queue name: use a non-empty name without '/'")
        with self.engine.begin() as conn:
            pool = self._pool_id(conn, work_pool_name)
            if conn.execute(sa.select(queue_t.c.id).where(queue_t.c.work_pool_id == pool.id,
                                                          queue_t.c.name == name)).first() is not None:
                raise ConfigurationError(f"work pool {work_pool_name!r} already has a queue {name!r} "
                                         f"(`distributary work-queue inspect {name} --pool {work_pool_name}`)")
            qid = add_queue(conn, pool.id, name, priority=priority, description=description,
                            concurrency_limit=concurrency_limit, paused=paused)
        return self.read_work_queue(qid)

    def read_work_queues(self, work_pool_name: str | None = None, names: Iterable[str] | None = None,
                         limit: int | None = None, offset: int = 0) -> list[O.WorkQueue]:
        """Queues by pool name, then priority (the order workers claim in), then name."""
        q = self._queues_query()
        if work_pool_name is not None:
            q = q.where(pool_t.c.name == work_pool_name)
        if names is not None:
            q = q.where(queue_t.c.name.in_(list(names)))
        q = q.order_by(pool_t.c.name, queue_t.c.priority, queue_t.c.name).offset(offset or 0).limit(limit)
        with self._read() as conn:
            if work_pool_name is not None:
                self._pool_id(conn, work_pool_name)
            return [self._queue(r) for r in conn.execute(q)]

    def read_work_queue(self, work_queue_id: uuid.UUID | str) -> O.WorkQueue:
        with self._read() as conn:
            r = conn.execute(self._queues_query().where(queue_t.c.id == str(work_queue_id))).first()
        if r is None:
            raise ObjectNotFound(f"no work queue with id {work_queue_id} in the run store "
                                 "(`distributary work-queue ls` lists them)")
        return self._queue(r)

    def read_work_queue_by_name(self, work_pool_name: str, name: str) -> O.WorkQueue:
        with self._read() as conn:
            self._pool_id(conn, work_pool_name)
            r = conn.execute(self._queues_query().where(pool_t.c.name == work_pool_name,
                                                        queue_t.c.name == name)).first()
        if r is None:
            raise ObjectNotFound(f"work pool {work_pool_name!r} has no queue {name!r}: create it with "
                                 f"`distributary work-queue create {name} --pool {work_pool_name}`")
        return self._queue(r)

    def update_work_queue(self, work_queue_id: uuid.UUID | str, **values: Any) -> O.WorkQueue:
        """Change fields of a queue: `name`, `description`, `priority` (a queue already there moves down),
        `concurrency_limit` (None: no limit), `paused`, `last_polled`."""
        allowed = {"name", "description", "priority", "concurrency_limit", "paused", "last_polled"}
        unknown = set(values) - allowed
        if unknown:
            raise ConfigurationError(f"cannot update work-queue field(s) {sorted(unknown)}: valid are "
                                     f"{sorted(allowed)}")
        if values.get("priority") is not None and values["priority"] < 1:
            raise ConfigurationError(f"a work queue's priority is 1 or more, got {values['priority']}")
        if values.get("concurrency_limit") is not None and values["concurrency_limit"] < 0:
            raise ConfigurationError(f"a work queue's concurrency limit is 0 or more, got {values['concurrency_limit']}")
        if "last_polled" in values:
            values["last_polled"] = _epoch(values["last_polled"])
        qid = str(work_queue_id)
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(queue_t.c.work_pool_id, queue_t.c.name).where(queue_t.c.id == qid)).first()
            if row is None:
                raise ObjectNotFound(f"no work queue with id {work_queue_id} in the run store")
            new_name = values.get("name")
            if new_name is not None and new_name != row.name:
                if conn.execute(sa.select(queue_t.c.id).where(queue_t.c.work_pool_id == row.work_pool_id,
                                                              queue_t.c.name == new_name)).first() is not None:
                    raise ConfigurationError(f"the pool already has a queue {new_name!r}")
                # its runs and the deployments sending runs to it carry its name
                conn.execute(sa.update(flow_run_t).where(flow_run_t.c.work_queue_id == qid).values(
                    work_queue_name=new_name))
                pool_name = sa.select(pool_t.c.name).where(pool_t.c.id == row.work_pool_id).scalar_subquery()
                dep_t = TABLES["deployment"]
                conn.execute(sa.update(dep_t).where(dep_t.c.work_pool_name == pool_name,
                                                    dep_t.c.work_queue_name == row.name).values(
                    work_queue_name=new_name))
            if values.get("priority") is not None:
                _make_room(conn, row.work_pool_id, values["priority"], qid)
            conn.execute(sa.update(queue_t).where(queue_t.c.id == qid).values(updated=time.time(), **values))
        return self.read_work_queue(qid)

    def delete_work_queue(self, work_queue_id: uuid.UUID | str) -> None:
        """Delete a queue; its runs that have not started move to the pool's default queue (which cannot be
        deleted)."""
        qid = str(work_queue_id)
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(queue_t.c.name, pool_t.c.name.label("pool_name"), pool_t.c.default_queue_id)
                               .select_from(queue_t.join(pool_t, pool_t.c.id == queue_t.c.work_pool_id))
                               .where(queue_t.c.id == qid)).first()
            if row is None:
                raise ObjectNotFound(f"no work queue with id {work_queue_id} in the run store")
            if row.default_queue_id == qid:
                raise ConfigurationError(f"{row.name!r} is the default queue of work pool {row.pool_name!r} and "
                                         "cannot be deleted (delete the pool instead)")
            default_name = conn.execute(sa.select(queue_t.c.name).where(queue_t.c.id == row.default_queue_id)
                                        ).scalar()
            conn.execute(sa.update(flow_run_t).where(flow_run_t.c.work_queue_id == qid,
                                                     flow_run_t.c.state_type == SCHEDULED)
                         .values(work_queue_id=row.default_queue_id, work_queue_name=default_name))
            conn.execute(sa.delete(queue_t).where(queue_t.c.id == qid))
