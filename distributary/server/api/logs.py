"""`/logs`: write (a list, as Prefect's client sends them) and filter."""
from __future__ import annotations

import datetime as dt
import uuid

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from ...runstore.batch import Batch
from ...schemas import filters as F
from ...schemas import sorting as S
from ..deps import Storage
from ._common import Body, Page, log_json, respond

router = APIRouter(prefix="/logs", tags=["logs"])


class LogCreate(Body):
    name: str
    level: int
    message: str
    timestamp: dt.datetime
    flow_run_id: uuid.UUID | None = None
    task_run_id: uuid.UUID | None = None


class LogsFilter(Page):
    logs: F.LogFilter | None = None
    sort: S.LogSort = S.LogSort.TIMESTAMP_ASC


@router.post("/", status_code=201)
def create_logs(logs: list[LogCreate], storage: Storage) -> Response:
    batch = Batch()
    batch.logs = [{"flow_run_id": None if lg.flow_run_id is None else str(lg.flow_run_id),
                   "task_run_id": None if lg.task_run_id is None else str(lg.task_run_id), "name": lg.name,
                   "level": lg.level, "message": lg.message, "timestamp": lg.timestamp.timestamp()} for lg in logs]
    storage.write(batch)
    return Response(status_code=201)


@router.post("/filter")
def read_logs(storage: Storage, body: LogsFilter | None = None) -> JSONResponse:
    body = body or LogsFilter()
    logs = storage.read_logs(body.logs, sort=body.sort, limit=body.limit, offset=body.offset)
    return respond([log_json(lg) for lg in logs])
