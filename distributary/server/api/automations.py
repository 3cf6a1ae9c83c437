"""`/automations`: distributary has no automations yet, so the two routes Prefect's client calls about a resource
(reading a deployment's related automations, deleting those a deployment owns when it is deleted or
re-registered) answer that there are none."""
from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from ._common import respond

router = APIRouter(prefix="/automations", tags=["Automations"])


@router.get("/related-to/{resource_id:path}")
def read_related_automations(resource_id: str) -> JSONResponse:
    """The automations whose triggers or actions name `resource_id` (`prefect.deployment.{id}`): none."""
    return respond([])


@router.delete("/owned-by/{resource_id:path}", status_code=202)
def delete_owned_automations(resource_id: str) -> Response:
    """Delete the automations `resource_id` owns: there are none to delete."""
    return Response(status_code=202)
