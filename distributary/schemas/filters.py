"""Filters for the client's read methods (Prefect's `prefect.client.schemas.filters` names and operators:
`any_`, `all_`, `like_`, `exists_`, `before_`/`after_`, `ge_`)."""
from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict


class FilterBase(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _IdAny(FilterBase):
    any_: list[uuid.UUID] | None = None


class _NameAny(FilterBase):
    any_: list[str] | None = None
    like_: str | None = None


class _TagsAll(FilterBase):
    all_: list[str] | None = None
    is_null_: bool | None = None


class _StateType(FilterBase):
    any_: list[str] | None = None
    not_any_: list[str] | None = None


class _StateName(FilterBase):
    any_: list[str] | None = None
    not_any_: list[str] | None = None


class _StateFilter(FilterBase):
    type: _StateType | None = None
    name: _StateName | None = None


class _Time(FilterBase):
    before_: dt.datetime | None = None
    after_: dt.datetime | None = None


FlowFilterId = FlowRunFilterId = TaskRunFilterId = ArtifactFilterId = _IdAny
FlowFilterName = FlowRunFilterName = TaskRunFilterName = VariableFilterName = _NameAny
FlowRunFilterTags = TaskRunFilterTags = VariableFilterTags = _TagsAll
FlowRunFilterStateType = TaskRunFilterStateType = _StateType
FlowRunFilterStateName = TaskRunFilterStateName = _StateName
FlowRunFilterState = TaskRunFilterState = _StateFilter
FlowRunFilterStartTime = TaskRunFilterStartTime = _Time


class FlowFilter(FilterBase):
    id: _IdAny | None = None
    name: _NameAny | None = None


class FlowRunFilterParentFlowRunId(FilterBase):
    any_: list[uuid.UUID] | None = None


class FlowRunFilterFlowId(FilterBase):
    any_: list[uuid.UUID] | None = None


class FlowRunFilter(FilterBase):
    id: _IdAny | None = None
    name: _NameAny | None = None
    tags: _TagsAll | None = None
    state: _StateFilter | None = None
    start_time: _Time | None = None
    flow_id: FlowRunFilterFlowId | None = None
    parent_flow_run_id: FlowRunFilterParentFlowRunId | None = None


class TaskRunFilterFlowRunId(FilterBase):
    any_: list[uuid.UUID] | None = None
    is_null_: bool | None = None


class TaskRunFilter(FilterBase):
    id: _IdAny | None = None
    name: _NameAny | None = None
    tags: _TagsAll | None = None
    state: _StateFilter | None = None
    start_time: _Time | None = None
    flow_run_id: TaskRunFilterFlowRunId | None = None


class LogFilterLevel(FilterBase):
    ge_: int | None = None
    le_: int | None = None


class LogFilterFlowRunId(FilterBase):
    any_: list[uuid.UUID] | None = None


class LogFilterTaskRunId(FilterBase):
    any_: list[uuid.UUID] | None = None
    is_null_: bool | None = None


class LogFilter(FilterBase):
    level: LogFilterLevel | None = None
    timestamp: _Time | None = None
    flow_run_id: LogFilterFlowRunId | None = None
    task_run_id: LogFilterTaskRunId | None = None


class ArtifactFilterKey(FilterBase):
    any_: list[str] | None = None
    like_: str | None = None
    exists_: bool | None = None


class ArtifactFilterType(FilterBase):
    any_: list[str] | None = None
    not_any_: list[str] | None = None


class ArtifactFilterFlowRunId(FilterBase):
    any_: list[uuid.UUID] | None = None


class ArtifactFilterTaskRunId(FilterBase):
    any_: list[uuid.UUID] | None = None


class ArtifactFilter(FilterBase):
    id: _IdAny | None = None
    key: ArtifactFilterKey | None = None
    type: ArtifactFilterType | None = None
    flow_run_id: ArtifactFilterFlowRunId | None = None
    task_run_id: ArtifactFilterTaskRunId | None = None


ArtifactCollectionFilter = ArtifactFilter
ArtifactCollectionFilterKey = ArtifactFilterKey


class VariableFilter(FilterBase):
    name: _NameAny | None = None
    tags: _TagsAll | None = None
