"""Filters for the client's read methods (Prefect's `prefect.client.schemas.filters` names and operators:
`any_`, `all_`, `like_`, `exists_`, `before_`/`after_`, `ge_`)."""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Optional

from pydantic import BaseModel, ConfigDict


class FilterBase(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _IdAny(FilterBase):
    any_: Optional[list[uuid.UUID]] = None


class _NameAny(FilterBase):
    any_: Optional[list[str]] = None
    like_: Optional[str] = None


class _TagsAll(FilterBase):
    all_: Optional[list[str]] = None
    is_null_: Optional[bool] = None


class _StateType(FilterBase):
    any_: Optional[list[str]] = None
    not_any_: Optional[list[str]] = None


class _StateName(FilterBase):
    any_: Optional[list[str]] = None
    not_any_: Optional[list[str]] = None


class _StateFilter(FilterBase):
    type: Optional[_StateType] = None
    name: Optional[_StateName] = None


class _Time(FilterBase):
    before_: Optional[dt.datetime] = None
    after_: Optional[dt.datetime] = None


FlowFilterId = FlowRunFilterId = TaskRunFilterId = ArtifactFilterId = _IdAny
FlowFilterName = FlowRunFilterName = TaskRunFilterName = VariableFilterName = _NameAny
FlowRunFilterTags = TaskRunFilterTags = VariableFilterTags = _TagsAll
FlowRunFilterStateType = TaskRunFilterStateType = _StateType
FlowRunFilterStateName = TaskRunFilterStateName = _StateName
FlowRunFilterState = TaskRunFilterState = _StateFilter
FlowRunFilterStartTime = TaskRunFilterStartTime = _Time


class FlowFilter(FilterBase):
    id: Optional[_IdAny] = None
    name: Optional[_NameAny] = None


class FlowRunFilterParentFlowRunId(FilterBase):
    any_: Optional[list[uuid.UUID]] = None


class FlowRunFilterFlowId(FilterBase):
    any_: Optional[list[uuid.UUID]] = None


class FlowRunFilter(FilterBase):
    id: Optional[_IdAny] = None
    name: Optional[_NameAny] = None
    tags: Optional[_TagsAll] = None
    state: Optional[_StateFilter] = None
    start_time: Optional[_Time] = None
    flow_id: Optional[FlowRunFilterFlowId] = None
    parent_flow_run_id: Optional[FlowRunFilterParentFlowRunId] = None


class TaskRunFilterFlowRunId(FilterBase):
    any_: Optional[list[uuid.UUID]] = None
    is_null_: Optional[bool] = None


class TaskRunFilter(FilterBase):
    id: Optional[_IdAny] = None
    name: Optional[_NameAny] = None
    tags: Optional[_TagsAll] = None
    state: Optional[_StateFilter] = None
    start_time: Optional[_Time] = None
    flow_run_id: Optional[TaskRunFilterFlowRunId] = None


class LogFilterLevel(FilterBase):
    ge_: Optional[int] = None
    le_: Optional[int] = None


class LogFilterFlowRunId(FilterBase):
    any_: Optional[list[uuid.UUID]] = None


class LogFilterTaskRunId(FilterBase):
    any_: Optional[list[uuid.UUID]] = None
    is_null_: Optional[bool] = None


class LogFilter(FilterBase):
    level: Optional[LogFilterLevel] = None
    timestamp: Optional[_Time] = None
    flow_run_id: Optional[LogFilterFlowRunId] = None
    task_run_id: Optional[LogFilterTaskRunId] = None


class ArtifactFilterKey(FilterBase):
    any_: Optional[list[str]] = None
    like_: Optional[str] = None
    exists_: Optional[bool] = None


class ArtifactFilterType(FilterBase):
    any_: Optional[list[str]] = None
    not_any_: Optional[list[str]] = None


class ArtifactFilterFlowRunId(FilterBase):
    any_: Optional[list[uuid.UUID]] = None


class ArtifactFilterTaskRunId(FilterBase):
    any_: Optional[list[uuid.UUID]] = None


class ArtifactFilter(FilterBase):
    id: Optional[_IdAny] = None
    key: Optional[ArtifactFilterKey] = None
    type: Optional[ArtifactFilterType] = None
    flow_run_id: Optional[ArtifactFilterFlowRunId] = None
    task_run_id: Optional[ArtifactFilterTaskRunId] = None


ArtifactCollectionFilter = ArtifactFilter
ArtifactCollectionFilterKey = ArtifactFilterKey


class VariableFilter(FilterBase):
    name: Optional[_NameAny] = None
    tags: Optional[_TagsAll] = None
