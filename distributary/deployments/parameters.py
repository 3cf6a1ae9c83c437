"""The OpenAPI schema of a flow's parameters (Prefect's `parameter_openapi_schema`), built by pydantic from the
flow function's signature, and the casting of `key=value` command-line parameters with it."""
from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import ConfigurationError

EMPTY_SCHEMA: dict[str, Any] = {"title": "Parameters", "type": "object", "properties": {}, "required": [],
                                "definitions": {}}


def _field(param: inspect.Parameter, position: int) -> tuple[Any, Any]:
    from pydantic import Field

    annotation = Any if param.annotation is inspect.Parameter.empty else param.annotation
    default = ... if param.default is inspect.Parameter.empty else param.default
    return annotation, Field(default=default, title=param.name, json_schema_extra={"position": position})


def _json_schema(fields: dict[str, tuple[Any, Any]]) -> dict[str, Any]:
    from pydantic import ConfigDict, create_model
    from pydantic.json_schema import PydanticJsonSchemaWarning

    model = create_model("Parameters", __config__=ConfigDict(arbitrary_types_allowed=True), **fields)  # type: ignore[call-overload]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PydanticJsonSchemaWarning)  # a default JSON cannot hold is left out
        return model.model_json_schema(ref_template="#/definitions/{model}")  # type: ignore[no-any-return]


def parameter_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """`{"title": "Parameters", "type": "object", "properties": {...}, "required": [...], "definitions": {...}}`
    for `fn`'s named parameters: each property has its title, position, JSON type and default; an annotation
    pydantic cannot describe becomes "any" (as Prefect does), `*args` and `**kwargs` are left out."""
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError):  # an annotation naming what the module does not define
        signature = inspect.signature(fn)
    fields: dict[str, tuple[Any, Any]] = {}
    for position, param in enumerate(signature.parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        field = _field(param, position)
        try:
            _json_schema({param.name: field})
        except Exception:  # any error pydantic raises for a type it cannot describe
            field = (Any, field[1])
        fields[param.name] = field
    try:
        schema = _json_schema(fields)
    except Exception:  # a name pydantic reserves (`model_config`, ...): describe the parameters untyped
        return {**EMPTY_SCHEMA, "properties": {name: {"title": name, "position": i}
                                               for i, name in enumerate(fields)}}
    return {"title": "Parameters", "type": "object", "properties": schema.get("properties", {}),
            "required": schema.get("required", []), "definitions": schema.get("$defs", {})}


def _types(prop: dict[str, Any]) -> set[str]:
    """The JSON types a schema property allows ("anyOf" of `int | None`, a single "type", or none given)."""
    if "type" in prop:
        t = prop["type"]
        return set(t) if isinstance(t, list) else {t}
    return set().union(*(_types(p) for p in prop.get("anyOf", []))) if "anyOf" in prop else set()


def cast_parameters(items: Iterable[str], schema: dict[str, Any] | None) -> dict[str, Any]:
    """`key=value` pairs as parameters: the value is read as JSON (`n=3` is 3, `xs=[1,2]` a list) and a value
    that is not JSON is a string; a parameter the schema types as a string stays the text given (`name=007` is
    "007"). With a schema, a name the flow does not take is an error listing those it does."""
    props = (schema or {}).get("properties") or {}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"--param takes key=value, got {item!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        types = _types(props.get(key, {}))
        if "string" in types and not isinstance(value, str) and not (value is None and "null" in types):
            value = raw
        out[key] = value
    if schema is not None:
        unknown = sorted(set(out) - set(props))
        if unknown:
            known = ", ".join(sorted(props)) or "none (the flow takes no parameters)"
            raise ConfigurationError(f"the deployment's flow has no parameter(s) {', '.join(unknown)}; its "
                                     f"parameters are: {known}")
    return out
