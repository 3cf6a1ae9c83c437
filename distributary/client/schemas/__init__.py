"""Prefect's `prefect.client.schemas` paths: `filters`, `sorting`, `objects`, `actions`."""
from ...schemas.objects import Artifact, ArtifactCollection, Flow, FlowRun, Log, State, TaskRun, Variable

__all__ = ["Artifact", "ArtifactCollection", "Flow", "FlowRun", "Log", "State", "TaskRun", "Variable"]
