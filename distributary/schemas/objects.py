"""The records the client returns (Prefect's `prefect.client.schemas.objects` names and fields)."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from ..states import FINAL_TYPES, StateType


class ObjectBase(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=False)


class State(ObjectBase):
    """One state of a run as recorded (the result itself stays in the result store: see `result_ref`)."""
    type: StateType
    name: Optional[str] = None
    message: Optional[str] = None
    timestamp: dt.datetime
    result_ref: Optional[dict[str, Any]] = None

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


class Flow(ObjectBase):
    id: uuid.UUID
    name: str
    created: dt.datetime


class FlowRun(ObjectBase):
    id: uuid.UUID
    name: str
    flow_id: uuid.UUID
    flow_version: Optional[str] = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    parent_task_run_id: Optional[uuid.UUID] = None
    parent_flow_run_id: Optional[uuid.UUID] = None
    run_count: int = 0
    expected_start_time: Optional[dt.datetime] = None
    start_time: Optional[dt.datetime] = None
    end_time: Optional[dt.datetime] = None
    total_run_time: dt.timedelta = dt.timedelta(0)
    state: Optional[State] = None
    state_type: Optional[StateType] = None
    state_name: Optional[str] = None
    created: Optional[dt.datetime] = None


class TaskRun(ObjectBase):
    id: uuid.UUID
    name: str
    task_key: str
    dynamic_key: str
    cache_key: Optional[str] = None
    flow_run_id: Optional[uuid.UUID] = None
    task_inputs: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    run_count: int = 0
    start_time: Optional[dt.datetime] = None
    end_time: Optional[dt.datetime] = None
    total_run_time: dt.timedelta = dt.timedelta(0)
    state: Optional[State] = None
    state_type: Optional[StateType] = None
    state_name: Optional[str] = None
    created: Optional[dt.datetime] = None


class Log(ObjectBase):
    id: Optional[int] = None
    name: str
    level: int
    message: str
    timestamp: dt.datetime
    flow_run_id: Optional[uuid.UUID] = None
    task_run_id: Optional[uuid.UUID] = None


class Artifact(ObjectBase):
    id: uuid.UUID
    key: Optional[str] = None
    type: str
    description: Optional[str] = None
    data: Any = None
    flow_run_id: Optional[uuid.UUID] = None
    task_run_id: Optional[uuid.UUID] = None
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
    state: Optional[State] = None
    status: str = "ACCEPT"
