"""The deployment of the current flow run, as `prefect.runtime.deployment`: `id`, `name`, `version`,
`flow_run_id`, `parameters`. Set in the process that runs a deployment's flow run (`serve()`, workers); outside
one every attribute is None (parameters: {})."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..context import deployment_run
from ._mock import attribute


def _spec_attr(name: str, default: Any = None) -> Callable[[], Any]:
    def get() -> Any:
        spec = deployment_run.get()
        value = getattr(spec, name, None) if spec is not None else None
        if value is None:
            return default() if callable(default) else default
        return str(value) if name in ("deployment_id", "id") else value
    return get


_GETTERS: dict[str, Callable[[], Any]] = {
    "id": _spec_attr("deployment_id"), "name": _spec_attr("deployment_name"),
    "version": _spec_attr("deployment_version"), "flow_run_id": _spec_attr("id"),
    "parameters": _spec_attr("parameters", dict)}


def __getattr__(name: str) -> Any:
    return attribute("deployment", name, _GETTERS)


__all__ = list(_GETTERS)
