"""Artifacts: reports, tables, links, progress bars and images a run leaves behind (Prefect's
`prefect.artifacts`), recorded in the run store.

    from distributary.artifacts import create_markdown_artifact, create_table_artifact

    create_markdown_artifact(markdown="# Report", key="daily-report")
    create_table_artifact(table=[{"id": 1, "ok": True}], key="rows")

Inside a flow or task run an artifact is linked to the run and goes out with the run's events (written in the
background, with the rest of the run); outside runs it is written at once. A keyed artifact keeps every
version; `Artifact.get(key)` and `distributary artifact ls` show the latest.
"""
from __future__ import annotations

import math
import re
import time
import uuid
from typing import Any

from .errors import ArtifactError

_KEY = re.compile(r"^[a-z0-9-]+$")


def _check_key(key: str | None) -> None:
    if key is not None and not _KEY.match(key):
        raise ArtifactError(f"artifact key {key!r} is not valid: use lowercase letters, numbers and dashes only "
                            "(e.g. 'daily-report')")


def _run_ids() -> tuple[str | None, str | None]:
    from .context import flow_run_ctx, task_run_ctx

    tctx, fctx = task_run_ctx.get(), flow_run_ctx.get()
    task_run_id = str(tctx.task_run.id) if tctx is not None else None
    flow_run_id = None
    if tctx is not None and tctx.task_run.flow_run_id is not None:
        flow_run_id = str(tctx.task_run.flow_run_id)
    elif fctx is not None and fctx.flow_run_id is not None:
        flow_run_id = str(fctx.flow_run_id)
    return flow_run_id, task_run_id


def _emit(data: dict[str, Any], in_run: bool) -> None:
    """Send an artifact event; outside a run, wait until it is written (so it can be read back at once)."""
    from .context import flow_run_ctx
    from .engine import transitions
    from .runstore import ensure_sink, write_artifact_now

    if in_run and flow_run_ctx.get() is None:
        # a task on a remote worker (processes, Dask, Ray): no flow run in this process. The artifact goes to the
        # driver with the batch's telemetry (before its outcome), so it lands in the driver's run store; a task
        # run outside a batch writes it now (the process may be stopped as soon as the task returns)
        from .runners.remote.telemetry import forward_artifact

        if not forward_artifact(data):
            write_artifact_now(data)
        return
    if ensure_sink() is None:  # recording is off
        return
    transitions.artifact(data)
    if not in_run:
        transitions.flush(30.0)


class Artifact:
    """An artifact to create (`Artifact(type="markdown", key="k", data="# hi").create()`), and `Artifact.get(key)`
    to read the latest version of a keyed one."""

    def __init__(self, type: str, data: Any, key: str | None = None, description: str | None = None):
        _check_key(key)
        self.type = type
        self.data = data
        self.key = key
        self.description = description

    def create(self) -> uuid.UUID:
        """Record the artifact; returns its id."""
        aid = uuid.uuid4()
        flow_run_id, task_run_id = _run_ids()
        now = time.time()
        _emit({"id": str(aid), "key": self.key, "type": self.type, "description": self.description,
               "data": self.data, "flow_run_id": flow_run_id, "task_run_id": task_run_id, "created": now,
               "updated": now}, in_run=flow_run_id is not None or task_run_id is not None)
        return aid

    @classmethod
    def get(cls, key: str) -> Any:
        """The latest version of the artifact `key` (a `distributary.schemas.objects.Artifact`), or None."""
        from .runstore import get_storage
        from .schemas import filters as F

        got = get_storage().read_artifacts(F.ArtifactFilter(key=F.ArtifactFilterKey(any_=[key])), limit=1)
        return got[0] if got else None


def create_markdown_artifact(markdown: str, key: str | None = None, description: str | None = None) -> uuid.UUID:
    """A Markdown report."""
    return Artifact("markdown", str(markdown), key, description).create()


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None  # JSON has no NaN (Prefect shows them as empty cells too)
    return value


def _table(table: Any) -> Any:
    if isinstance(table, dict):
        if not all(isinstance(v, (list, tuple)) for v in table.values()):
            raise ArtifactError("a table given as a dict must map column names to lists of values")
        return {str(k): [_clean(x) for x in v] for k, v in table.items()}
    if isinstance(table, (list, tuple)):
        if all(isinstance(r, dict) for r in table):
            return [{str(k): _clean(v) for k, v in r.items()} for r in table]
        if all(isinstance(r, (list, tuple)) for r in table):
            return [[_clean(v) for v in r] for r in table]
    raise ArtifactError(f"a table must be a list of dicts, a dict of lists or a list of lists, not "
                        f"{type(table).__name__}")


def create_table_artifact(table: Any, key: str | None = None, description: str | None = None) -> uuid.UUID:
    """A table: a list of dicts (rows), a dict of lists (columns) or a list of lists."""
    return Artifact("table", _table(table), key, description).create()


def create_link_artifact(link: str, link_text: str | None = None, key: str | None = None,
                         description: str | None = None) -> uuid.UUID:
    """A link, shown as `[link_text](link)`."""
    return Artifact("markdown", f"[{link_text}]({link})" if link_text else f"[{link}]({link})", key,
                    description).create()


def create_image_artifact(image_url: str, key: str | None = None, description: str | None = None) -> uuid.UUID:
    """An image, by URL."""
    return Artifact("image", str(image_url), key, description).create()


def _progress(progress: float) -> float:
    try:
        p = float(progress)
    except (TypeError, ValueError):
        raise ArtifactError(f"progress must be a number from 0 to 100, not {progress!r}") from None
    if not 0 <= p <= 100:
        raise ArtifactError(f"progress must be from 0 to 100, got {p}")
    return p


def create_progress_artifact(progress: float, key: str | None = None, description: str | None = None) -> uuid.UUID:
    """A progress bar (0-100); move it with `update_progress_artifact(artifact_id, progress)`."""
    return Artifact("progress", _progress(progress), key, description).create()


def update_progress_artifact(artifact_id: uuid.UUID | str, progress: float,
                             description: str | None = None) -> uuid.UUID:
    """Set the progress (0-100) of the progress artifact `artifact_id`."""
    flow_run_id, task_run_id = _run_ids()
    data: dict[str, Any] = {"op": "update", "id": str(artifact_id), "data": _progress(progress),
                            "updated": time.time()}
    if description is not None:
        data["description"] = description
    _emit(data, in_run=flow_run_id is not None or task_run_id is not None)
    return uuid.UUID(str(artifact_id))


__all__ = ["Artifact", "create_markdown_artifact", "create_table_artifact", "create_link_artifact",
           "create_image_artifact", "create_progress_artifact", "update_progress_artifact"]
