"""Prefect's `prefect.client.schemas` paths: `filters`, `sorting`, `objects`, `actions`."""
from ...schemas.objects import (
    Artifact,
    ArtifactCollection,
    ConcurrencyLimitConfig,
    Deployment,
    DeploymentSchedule,
    Flow,
    FlowRun,
    Log,
    State,
    TaskRun,
    Variable,
)

__all__ = ["Artifact", "ArtifactCollection", "ConcurrencyLimitConfig", "Deployment", "DeploymentSchedule", "Flow", "FlowRun", "Log", "State", "TaskRun", "Variable"]
