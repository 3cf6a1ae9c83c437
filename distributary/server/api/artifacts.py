"""`/artifacts`: create, filter, the latest version of each key, read, update (progress), delete."""
from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from ...errors import ObjectNotFound
from ...runstore.batch import Batch
from ...schemas import filters as F
from ...schemas import sorting as S
from ..deps import Storage
from ._common import Body, Page, artifact_json, respond

router = APIRouter(prefix="/artifacts", tags=["artifacts"])


class ArtifactCreate(Body):
    key: str | None = None
    type: str
    description: str | None = None
    data: Any = None
    metadata_: dict[str, Any] | None = None  # Prefect's; not kept
    flow_run_id: uuid.UUID | None = None
    task_run_id: uuid.UUID | None = None


class ArtifactUpdate(Body):
    data: Any = None
    description: str | None = None
    metadata_: dict[str, Any] | None = None


class ArtifactsFilter(Page):
    artifacts: F.ArtifactFilter | None = None
    flow_runs: F.FlowRunFilter | None = None
    task_runs: F.TaskRunFilter | None = None
    sort: S.ArtifactSort | None = None


def _read(storage: Any, artifact_id: uuid.UUID) -> Any:
    got = storage.read_artifacts(F.ArtifactFilter(id=F.ArtifactFilterId(any_=[artifact_id])), limit=1)
    if not got:
        raise ObjectNotFound(f"no artifact with id {artifact_id}")
    return got[0]


def _filtered(body: ArtifactsFilter | None, storage: Any, latest: bool) -> JSONResponse:
    body = body or ArtifactsFilter()
    arts = storage.read_artifacts(body.artifacts, sort=body.sort, limit=body.limit, offset=body.offset,
                                  latest=latest, flow_run_filter=body.flow_runs, task_run_filter=body.task_runs)
    return respond([artifact_json(a) for a in arts])


@router.post("/", status_code=201)
def create_artifact(body: ArtifactCreate, storage: Storage) -> JSONResponse:
    aid, now = uuid.uuid4(), time.time()
    batch = Batch()
    batch.add_artifact({"id": aid, "key": body.key, "type": body.type, "description": body.description,
                        "data": body.data, "flow_run_id": body.flow_run_id, "task_run_id": body.task_run_id,
                        "created": now, "updated": now})
    storage.write(batch)
    return respond(artifact_json(_read(storage, aid)), 201)


@router.post("/filter")
def read_artifacts(storage: Storage, body: ArtifactsFilter | None = None) -> JSONResponse:
    """Every artifact version that matches, newest first."""
    return _filtered(body, storage, latest=False)


@router.post("/latest/filter")
def read_latest_artifacts(storage: Storage, body: ArtifactsFilter | None = None) -> JSONResponse:
    """The latest version of each keyed artifact that matches (Prefect's artifact collections)."""
    return _filtered(body, storage, latest=True)


@router.get("/{key}/latest")
def read_latest_artifact(key: str, storage: Storage) -> JSONResponse:
    got = storage.read_artifacts(F.ArtifactFilter(key=F.ArtifactFilterKey(any_=[key])), limit=1)
    if not got:
        raise ObjectNotFound(f"no artifact with key {key!r}")
    return respond(artifact_json(got[0]))


@router.get("/{artifact_id}")
def read_artifact(artifact_id: uuid.UUID, storage: Storage) -> JSONResponse:
    return respond(artifact_json(_read(storage, artifact_id)))


@router.patch("/{artifact_id}", status_code=204)
def update_artifact(artifact_id: uuid.UUID, body: ArtifactUpdate, storage: Storage) -> Response:
    """Replace an artifact's data (a progress artifact's new value)."""
    _read(storage, artifact_id)
    batch = Batch()
    batch.add_artifact({"op": "update", "id": artifact_id, "data": body.data, "updated": time.time()})
    storage.write(batch)
    return Response(status_code=204)


@router.delete("/{artifact_id}", status_code=204)
def delete_artifact(artifact_id: uuid.UUID, storage: Storage) -> Response:
    storage.delete_artifact(artifact_id)
    return Response(status_code=204)


@router.delete("/key/{key}")
def delete_artifacts_by_key(key: str, storage: Storage) -> int:
    """Delete every version of the artifact `key` (distributary's); how many were deleted."""
    n = int(storage.delete_artifacts(key))
    if not n:
        raise ObjectNotFound(f"no artifact with key {key!r}")
    return n
