"""The check behind `enforce_parameter_schema`: a run's parameters (the deployment's defaults with the run's over
them) validated against the deployment's `parameter_openapi_schema` with jsonschema (Draft 2020-12, as Prefect's
server does), the first failure named as Prefect names it."""
from __future__ import annotations

import json
from typing import Any

from ..errors import ParameterTypeError

FIX = ("pass values of the types the flow's signature declares, or register the deployment with "
       "enforce_parameter_schema=False to let any parameters through")


def _as_json(parameters: dict[str, Any]) -> Any:
    """The parameters as the run store keeps them (tuples become lists): what the flow's run will read."""
    try:
        return json.loads(json.dumps(parameters))
    except (TypeError, ValueError):  # not JSON: the insert refuses it with its own error
        return parameters


def schema_failure(parameters: dict[str, Any], schema: dict[str, Any]) -> str | None:
    """Prefect's wording of the first failure ("Validation failed for field 'n'. Failure reason: 'x' is not of
    type 'integer'"), or None when the parameters validate."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    try:
        error = best_match(Draft202012Validator(schema).iter_errors(_as_json(parameters)))
    except RecursionError:
        return "Validation failed: the parameter schema has circular references."
    if error is None:
        return None
    where = "Validation failed." if error.json_path == "$" else (
        f"Validation failed for field {error.json_path.removeprefix('$.')!r}.")
    return f"{where} Failure reason: {error.message}"


def check_parameters(parameters: dict[str, Any], schema: dict[str, Any] | None, deployment: str) -> None:
    """Raise `ParameterTypeError` naming the parameter that does not validate (nothing to check without a
    schema)."""
    if not schema:
        return
    failure = schema_failure(parameters, schema)
    if failure is not None:
        raise ParameterTypeError(f"Error creating flow run: {failure} (deployment {deployment!r}: {FIX})")
