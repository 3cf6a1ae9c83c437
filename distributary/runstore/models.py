"""SQLAlchemy 2 models of the run store. Times are UNIX seconds (float); ids are UUID strings; JSON columns hold
parameters, tags, upstream inputs, result references (never result bytes) and artifact data.

The schema changes only through the Alembic migrations in `migrations/versions/`; a change here needs a new
revision there.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String, Text, UniqueConstraint, false, true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = String(36)


class Base(DeclarativeBase):
    pass


class FlowRow(Base):
    __tablename__ = "flow"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    created: Mapped[float] = mapped_column(Float)


class FlowRunRow(Base):
    __tablename__ = "flow_run"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    flow_id: Mapped[str] = mapped_column(ID, index=True)
    flow_name: Mapped[str] = mapped_column(String(255), index=True)
    flow_version: Mapped[str | None] = mapped_column(String(255), nullable=True)
    parameters: Mapped[Any] = mapped_column(JSON, nullable=True)
    tags: Mapped[Any] = mapped_column(JSON, nullable=True)
    parent_task_run_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    parent_flow_run_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    run_count: Mapped[int] = mapped_column(Integer, default=0)
    expected_start_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    start_time: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    end_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    total_run_time: Mapped[float] = mapped_column(Float, default=0.0)
    state_type: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    state_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    state_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    result_ref: Mapped[Any] = mapped_column(JSON, nullable=True)
    created: Mapped[float] = mapped_column(Float)
    # runs of a deployment (revision 0004); the run-event sink never writes these columns, so they survive its upserts
    deployment_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    auto_scheduled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    work_pool_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    job_variables: Mapped[Any] = mapped_column(JSON, nullable=True)
    worker_name: Mapped[str | None] = mapped_column(String(255), nullable=True)  # revision 0005
    infrastructure_pid: Mapped[str | None] = mapped_column(String(255), nullable=True)  # revision 0007
    work_queue_name: Mapped[str | None] = mapped_column(String(255), nullable=True)  # revision 0009
    work_queue_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    __table_args__ = (Index("ix_flow_run_deployment_id", "deployment_id", "state_type", "expected_start_time"),
                      Index("uq_flow_run_flow_id_idempotency_key", "flow_id", "idempotency_key", unique=True),
                      Index("ix_flow_run_work_pool", "work_pool_name", "state_type", "expected_start_time"),
                      Index("ix_flow_run_work_queue", "work_queue_id", "state_type", "expected_start_time"))


class TaskRunRow(Base):
    __tablename__ = "task_run"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    task_key: Mapped[str] = mapped_column(String(255))
    dynamic_key: Mapped[str] = mapped_column(String(64))
    cache_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    flow_run_id: Mapped[str | None] = mapped_column(ID, nullable=True, index=True)
    task_inputs: Mapped[Any] = mapped_column(JSON, nullable=True)
    tags: Mapped[Any] = mapped_column(JSON, nullable=True)
    run_count: Mapped[int] = mapped_column(Integer, default=0)
    start_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    total_run_time: Mapped[float] = mapped_column(Float, default=0.0)
    state_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    state_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    state_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    state_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    result_ref: Mapped[Any] = mapped_column(JSON, nullable=True)
    created: Mapped[float] = mapped_column(Float)
    # [[type, name, message, timestamp] or [..., result_ref], ...], oldest first (revision 0003)
    state_history: Mapped[Any] = mapped_column(JSON, nullable=True)


class StateRow(Base):
    """One entry of a run's state history (task runs and flow runs alike)."""
    __tablename__ = "run_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ID)
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    timestamp: Mapped[float] = mapped_column(Float)
    result_ref: Mapped[Any] = mapped_column(JSON, nullable=True)
    __table_args__ = (Index("ix_run_state_run_id", "run_id"),)


class LogRow(Base):
    __tablename__ = "log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    flow_run_id: Mapped[str | None] = mapped_column(ID, nullable=True, index=True)
    task_run_id: Mapped[str | None] = mapped_column(ID, nullable=True, index=True)
    name: Mapped[str] = mapped_column(String(255))
    level: Mapped[int] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[float] = mapped_column(Float, index=True)


class ArtifactRow(Base):
    """One version of an artifact: a keyed artifact has one row per version, the latest is the newest row."""
    __tablename__ = "artifact"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    key: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    type: Mapped[str] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    data: Mapped[Any] = mapped_column(JSON, nullable=True)
    flow_run_id: Mapped[str | None] = mapped_column(ID, nullable=True, index=True)
    task_run_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    created: Mapped[float] = mapped_column(Float, index=True)
    updated: Mapped[float] = mapped_column(Float)


class VariableRow(Base):
    __tablename__ = "variable"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    tags: Mapped[Any] = mapped_column(JSON, nullable=True)
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)


class DeploymentRow(Base):
    """A deployment: a flow's entrypoint with default parameters, tags and schedules (revision 0004)."""
    __tablename__ = "deployment"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    flow_id: Mapped[str] = mapped_column(ID)
    flow_name: Mapped[str] = mapped_column(String(255))
    entrypoint: Mapped[str | None] = mapped_column(Text, nullable=True)
    path: Mapped[str | None] = mapped_column(Text, nullable=True)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    version: Mapped[str | None] = mapped_column(String(255), nullable=True)
    parameters: Mapped[Any] = mapped_column(JSON, nullable=True)
    tags: Mapped[Any] = mapped_column(JSON, nullable=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    concurrency_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    collision_strategy: Mapped[str | None] = mapped_column(String(16), nullable=True)
    work_pool_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    work_queue_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    job_variables: Mapped[Any] = mapped_column(JSON, nullable=True)
    last_polled: Mapped[float | None] = mapped_column(Float, nullable=True)
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)
    parameter_openapi_schema: Mapped[Any] = mapped_column(JSON, nullable=True)  # revision 0008
    enforce_parameter_schema: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())  # 0010
    __table_args__ = (UniqueConstraint("flow_name", "name", name="uq_deployment_flow_name_name"),)


class DeploymentScheduleRow(Base):
    __tablename__ = "deployment_schedule"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    deployment_id: Mapped[str] = mapped_column(ID, index=True)
    schedule: Mapped[Any] = mapped_column(JSON)  # distributary.schedules.Schedule.to_dict()
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    parameters: Mapped[Any] = mapped_column(JSON, nullable=True)
    slug: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created: Mapped[float] = mapped_column(Float)


class WorkPoolRow(Base):
    """A work pool: where a deployment's runs go to be picked up by workers (revision 0005)."""
    __tablename__ = "work_pool"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    concurrency_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    base_job_template: Mapped[Any] = mapped_column(JSON, nullable=True)
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)
    default_queue_id: Mapped[str | None] = mapped_column(ID, nullable=True)  # revision 0009


class WorkQueueRow(Base):
    """A queue of a work pool (revision 0009): workers claim from a pool's queues by `priority` (lower first),
    skip paused ones, and keep each under its `concurrency_limit`."""
    __tablename__ = "work_queue"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    work_pool_id: Mapped[str] = mapped_column(ID)
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    concurrency_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    last_polled: Mapped[float | None] = mapped_column(Float, nullable=True)
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)
    __table_args__ = (UniqueConstraint("work_pool_id", "name", name="uq_work_queue_pool_name"),)


class WorkerRow(Base):
    """A worker polling a pool; its heartbeat tells whether its runs are still looked after."""
    __tablename__ = "worker"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    work_pool_name: Mapped[str] = mapped_column(String(255))
    last_heartbeat: Mapped[float] = mapped_column(Float)
    created: Mapped[float] = mapped_column(Float)
    __table_args__ = (UniqueConstraint("work_pool_name", "name", name="uq_worker_pool_name"),)


class ConcurrencyLimitRow(Base):
    """A global concurrency limit or rate limit (revision 0006). `active_slots` is the occupancy at `slots_ts`;
    a limit with `slot_decay_per_second` loses that many slots each second after it."""
    __tablename__ = "concurrency_limit"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    limit: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    active_slots: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    slots_ts: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    denied_slots: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    slot_decay_per_second: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    avg_slot_occupancy_seconds: Mapped[float] = mapped_column(Float, default=2.0, server_default="2")
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)


class ConcurrencyLeaseRow(Base):
    """Slots of one limit held by one lease; a lease over several limits has a row per limit. A lease that is not
    renewed before `expires` gives its slots back (to the next acquisition of that limit)."""
    __tablename__ = "concurrency_lease"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    limit_id: Mapped[str] = mapped_column(ID, primary_key=True)
    slots: Mapped[int] = mapped_column(Integer)
    holder: Mapped[Any] = mapped_column(JSON, nullable=True)
    expires: Mapped[float] = mapped_column(Float)
    created: Mapped[float] = mapped_column(Float)
    __table_args__ = (Index("ix_concurrency_lease_limit", "limit_id", "expires"),)


TABLES = {t.name: t for t in Base.metadata.sorted_tables}
