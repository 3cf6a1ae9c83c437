"""`/variables`: create, filter, read, update and delete by name or id (JSON values, as in Prefect 3)."""
from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from ...errors import ObjectNotFound
from ...schemas import filters as F
from ...schemas import sorting as S
from ..deps import Storage
from ._common import Body, Page, respond, variable_json

router = APIRouter(prefix="/variables", tags=["variables"])


class VariableCreate(Body):
    name: str = Field(..., min_length=1, max_length=255)
    value: Any = None
    tags: list[str] = []


class VariableUpdate(Body):
    name: str | None = Field(None, min_length=1, max_length=255)
    value: Any = None
    tags: list[str] | None = None


class VariablesFilter(Page):
    variables: F.VariableFilter | None = None
    sort: S.VariableSort | None = None


def _by_name(storage: Any, name: str) -> Any:
    var = storage.read_variable_by_name(name)
    if var is None:
        raise ObjectNotFound(f"no variable named {name!r}")
    return var


def _by_id(storage: Any, variable_id: uuid.UUID) -> Any:
    for var in storage.read_variables():  # variables are few; the store has no id filter for them
        if var.id == variable_id:
            return var
    raise ObjectNotFound(f"no variable with id {variable_id}")


def _update(storage: Any, var: Any, body: VariableUpdate) -> Response:
    if body.name is not None and body.name != var.name:
        raise HTTPException(422, "renaming a variable is not supported: create the new name, delete the old one")
    fields = body.model_fields_set
    storage.set_variable(var.name, body.value if "value" in fields else var.value,
                         tags=body.tags if body.tags is not None else var.tags, overwrite=True)
    return Response(status_code=204)


@router.post("/", status_code=201)
def create_variable(body: VariableCreate, storage: Storage) -> JSONResponse:
    if storage.read_variable_by_name(body.name) is not None:
        return respond({"detail": f"variable {body.name!r} already exists: update it with PATCH "
                                  f"/api/variables/name/{body.name}"}, 409)
    return respond(variable_json(storage.set_variable(body.name, body.value, tags=body.tags)), 201)


@router.post("/filter")
def read_variables(storage: Storage, body: VariablesFilter | None = None) -> JSONResponse:
    body = body or VariablesFilter()
    got = storage.read_variables(body.variables, sort=body.sort, limit=body.limit, offset=body.offset)
    return respond([variable_json(v) for v in got])


@router.get("/name/{name}")
def read_variable_by_name(name: str, storage: Storage) -> JSONResponse:
    return respond(variable_json(_by_name(storage, name)))


@router.patch("/name/{name}", status_code=204)
def update_variable_by_name(name: str, body: VariableUpdate, storage: Storage) -> Response:
    return _update(storage, _by_name(storage, name), body)


@router.delete("/name/{name}", status_code=204)
def delete_variable_by_name(name: str, storage: Storage) -> Response:
    if not storage.delete_variable_by_name(name):
        raise ObjectNotFound(f"no variable named {name!r}")
    return Response(status_code=204)


@router.get("/{variable_id}")
def read_variable(variable_id: uuid.UUID, storage: Storage) -> JSONResponse:
    return respond(variable_json(_by_id(storage, variable_id)))


@router.patch("/{variable_id}", status_code=204)
def update_variable(variable_id: uuid.UUID, body: VariableUpdate, storage: Storage) -> Response:
    return _update(storage, _by_id(storage, variable_id), body)


@router.delete("/{variable_id}", status_code=204)
def delete_variable(variable_id: uuid.UUID, storage: Storage) -> Response:
    var = _by_id(storage, variable_id)
    storage.delete_variable_by_name(var.name)
    return Response(status_code=204)
