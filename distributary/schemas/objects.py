"""The records the client returns (Prefect's `prefect.client.schemas.objects` names and fields)."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..states import FINAL_TYPES, StateType


class ObjectBase(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=False)


class State(ObjectBase):
    """One state of a run as recorded (the result itself stays in the result store: see `result_ref`)."""
    type: StateType
    name: str | None = None
    message: str | None = None
    timestamp: dt.datetime
    result_ref: dict[str, Any] | None = None

    def is_scheduled(self) -> bool:
        return self.type == StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type == StateType.PENDING

    def is_running(self) -> bool:
        return self.type == StateType.RUNNING

    def is_completed(self) -> bool:
        return self.type == StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type == StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type == StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type == StateType.CANCELLED

    def is_paused(self) -> bool:
        return self.type == StateType.PAUSED

    def is_final(self) -> bool:
        return self.type in FINAL_TYPES

    def __str__(self) -> str:  # as `distributary.states.State` prints: Completed(), Failed(message='...')
        return f"{self.name or self.type.value.title()}({'' if self.message is None else f'message={self.message!r}'})"


class Flow(ObjectBase):
    id: uuid.UUID
    name: str
    created: dt.datetime


class FlowRun(ObjectBase):
    id: uuid.UUID
    name: str
    flow_id: uuid.UUID
    flow_version: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    parent_task_run_id: uuid.UUID | None = None
    parent_flow_run_id: uuid.UUID | None = None
    run_count: int = 0
    expected_start_time: dt.datetime | None = None
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    total_run_time: dt.timedelta = dt.timedelta(0)
    state: State | None = None
    state_type: StateType | None = None
    state_name: str | None = None
    created: dt.datetime | None = None
    deployment_id: uuid.UUID | None = None
    idempotency_key: str | None = None
    auto_scheduled: bool = False
    work_pool_name: str | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)
    worker_name: str | None = None
    infrastructure_pid: str | None = None
    work_queue_name: str | None = None
    work_queue_id: uuid.UUID | None = None


class TaskRun(ObjectBase):
    id: uuid.UUID
    name: str
    task_key: str
    dynamic_key: str
    cache_key: str | None = None
    flow_run_id: uuid.UUID | None = None
    task_inputs: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    run_count: int = 0
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    total_run_time: dt.timedelta = dt.timedelta(0)
    state: State | None = None
    state_type: StateType | None = None
    state_name: str | None = None
    created: dt.datetime | None = None


class Log(ObjectBase):
    id: int | None = None
    name: str
    level: int
    message: str
    timestamp: dt.datetime
    flow_run_id: uuid.UUID | None = None
    task_run_id: uuid.UUID | None = None


class Artifact(ObjectBase):
    id: uuid.UUID
    key: str | None = None
    type: str
    description: str | None = None
    data: Any = None
    flow_run_id: uuid.UUID | None = None
    task_run_id: uuid.UUID | None = None
    created: dt.datetime
    updated: dt.datetime


class ArtifactCollection(Artifact):
    """The latest version of a keyed artifact (`read_latest_artifacts`); `latest_id` is that version's id."""
    latest_id: uuid.UUID


class Variable(ObjectBase):
    id: uuid.UUID
    name: str
    value: Any = None
    tags: list[str] = Field(default_factory=list)
    created: dt.datetime
    updated: dt.datetime


class OrchestrationResult(ObjectBase):
    """What `set_flow_run_state` returns: the state now in effect and whether the proposal was accepted."""
    state: State | None = None
    status: str = "ACCEPT"   # ACCEPT, REJECT (another state took effect), ABORT (nothing changed), as in Prefect
    details: dict[str, Any] = Field(default_factory=lambda: {"type": "accept_details"})


class ConcurrencyLimitStrategy:
    """What happens to a deployment's new run when its concurrency limit is reached."""
    ENQUEUE = "ENQUEUE"        # it waits for a slot
    CANCEL_NEW = "CANCEL_NEW"  # it is cancelled


class ConcurrencyOptions(ObjectBase):
    collision_strategy: Literal["ENQUEUE", "CANCEL_NEW"] = "ENQUEUE"


class ConcurrencyLimitConfig(ObjectBase):
    """A deployment's concurrency limit with its collision strategy (`flow.serve(concurrency_limit=...)` takes
    this or a plain int)."""
    limit: int = Field(ge=1)
    collision_strategy: Literal["ENQUEUE", "CANCEL_NEW"] = "ENQUEUE"


SCHEDULE_KEYS = ("cron", "interval", "rrule")  # a schedule's kind is the one of these keys it has


class DeploymentSchedule(ObjectBase):
    """One schedule of a deployment: the schedule itself (`distributary.schedules.Schedule.to_dict()`), whether
    it is active, and parameters that override the deployment's for its runs."""
    id: uuid.UUID
    deployment_id: uuid.UUID
    schedule: dict[str, Any]
    active: bool = True
    parameters: dict[str, Any] = Field(default_factory=dict)
    slug: str | None = None
    created: dt.datetime | None = None

    @field_validator("schedule")
    @classmethod
    def _kind(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Prefect's shape names no kind (`{"cron": ...}`): it is the one of cron, interval, rrule given."""
        if "type" not in value:
            kinds = [k for k in SCHEDULE_KEYS if k in value]
            if len(kinds) == 1:
                return {"type": kinds[0], **value}
        return value

    def as_schedule(self) -> Any:
        from ..schedules import schedule_from_dict

        return schedule_from_dict(self.schedule, active=self.active, parameters=self.parameters, slug=self.slug)


class Deployment(ObjectBase):
    """A flow packaged to run on demand or on schedules: its entrypoint (`path/file.py:function`), default
    parameters, tags and schedules."""
    id: uuid.UUID
    name: str
    flow_id: uuid.UUID
    flow_name: str
    entrypoint: str | None = None
    path: str | None = None
    description: str | None = None
    version: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    paused: bool = False
    schedules: list[DeploymentSchedule] = Field(default_factory=list)
    concurrency_limit: int | None = None
    concurrency_options: ConcurrencyOptions | None = None
    work_pool_name: str | None = None
    work_queue_name: str | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)
    # the OpenAPI schema of the flow's parameters (None for a deployment registered without one)
    parameter_openapi_schema: dict[str, Any] | None = None
    # runs' parameters must validate against that schema (Prefect 3's default: true)
    enforce_parameter_schema: bool = True
    last_polled: dt.datetime | None = None
    created: dt.datetime | None = None
    updated: dt.datetime | None = None

    @property
    def full_name(self) -> str:
        """`flow-name/deployment-name`, the name `run_deployment` and the CLI take."""
        return f"{self.flow_name}/{self.name}"


class WorkPool(ObjectBase):
    """A work pool: deployments name it, workers poll it. `base_job_template` is Prefect's format
    (`job_configuration` with `{{ variable }}` placeholders, `variables` a JSON schema with defaults)."""
    id: uuid.UUID
    name: str
    type: str
    description: str | None = None
    is_paused: bool = False
    concurrency_limit: int | None = None
    base_job_template: dict[str, Any] = Field(default_factory=dict)
    default_queue_id: uuid.UUID | None = None
    created: dt.datetime | None = None
    updated: dt.datetime | None = None


class WorkQueue(ObjectBase):
    """A queue of a work pool (Prefect's `WorkQueue`): workers claim its runs by `priority` (lower first), none
    while it is paused, and at most `concurrency_limit` of them Pending/Running at once."""
    id: uuid.UUID
    name: str
    work_pool_id: uuid.UUID
    work_pool_name: str | None = None
    description: str | None = None
    priority: int = 1
    concurrency_limit: int | None = None
    is_paused: bool = False
    last_polled: dt.datetime | None = None
    created: dt.datetime | None = None
    updated: dt.datetime | None = None

    @property
    def status(self) -> str:
        """Prefect's WorkQueueStatus: PAUSED, READY (polled in the last 60 s) or NOT_READY."""
        if self.is_paused:
            return "PAUSED"
        if self.last_polled is not None and (dt.datetime.now(dt.timezone.utc) - self.last_polled).total_seconds() < 60:
            return "READY"
        return "NOT_READY"


class Worker(ObjectBase):
    id: uuid.UUID
    name: str
    work_pool_name: str
    last_heartbeat_time: dt.datetime | None = None
    created: dt.datetime | None = None
