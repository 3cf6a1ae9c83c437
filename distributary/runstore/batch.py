"""Rows on their way to the run store (no SQLAlchemy here: the sink builds batches before the database is open)."""
from __future__ import annotations

import uuid
from typing import Any

FLOW_NAMESPACE = uuid.UUID("6f1d2c0e-4d8a-4c1b-9f0e-2f2b8a1f5d11")


def flow_id_for(name: str) -> str:
    """Flow ids are derived from the name, so every process agrees on them without asking the database."""
    return str(uuid.uuid5(FLOW_NAMESPACE, name))


def result_ref_row(ref: Any) -> dict[str, Any] | None:
    """A result reference as stored: where the result lives, never its bytes."""
    if ref is None:
        return None
    if isinstance(ref, dict):
        return ref
    url = getattr(ref, "store_url", None)
    if url is not None:
        return {"store_url": url, "key": ref.key, "storage_options": dict(getattr(ref, "storage_options", {}) or {})}
    return {"repr": repr(ref)}


class Batch:
    """Rows to write in one transaction. Flow runs, task runs and artifacts are upserts by id (the newest row
    wins); states and logs are appended; artifact updates (progress) change existing rows."""

    __slots__ = ("flows", "flow_runs", "task_runs", "states", "logs", "artifacts", "artifact_updates")
    FIELDS = __slots__

    def __init__(self) -> None:
        self.flows: dict[str, dict[str, Any]] = {}
        self.flow_runs: dict[str, dict[str, Any]] = {}
        self.task_runs: dict[str, dict[str, Any]] = {}
        self.states: list[dict[str, Any]] = []
        self.logs: list[dict[str, Any]] = []
        self.artifacts: dict[str, dict[str, Any]] = {}
        self.artifact_updates: dict[str, dict[str, Any]] = {}

    def __len__(self) -> int:
        return sum(len(getattr(self, f)) for f in self.FIELDS)

    def add_artifact(self, data: dict[str, Any]) -> None:
        """An `artifact` event: a new artifact (version), or `{"op": "update", "id", "data", "updated"}`."""
        aid = str(data["id"])
        if data.get("op") == "update":
            if aid in self.artifacts:
                self.artifacts[aid].update(data=data["data"], updated=data["updated"])
            else:
                self.artifact_updates[aid] = {"id": aid, "data": data["data"], "updated": data["updated"]}
            return
        row = {k: data.get(k) for k in ("key", "type", "description", "data", "flow_run_id", "task_run_id",
                                         "created", "updated")}
        row["id"] = aid
        for k in ("flow_run_id", "task_run_id"):
            row[k] = None if row[k] is None else str(row[k])
        self.artifacts[aid] = row

    def merge(self, other: Batch) -> None:
        self.flows.update(other.flows)
        self.flow_runs.update(other.flow_runs)
        self.task_runs.update(other.task_runs)
        self.states.extend(other.states)
        self.logs.extend(other.logs)
        self.artifacts.update(other.artifacts)
        self.artifact_updates.update(other.artifact_updates)

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.FIELDS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Batch:
        b = cls()
        for f in cls.FIELDS:
            if f in d:
                setattr(b, f, d[f])
        return b
