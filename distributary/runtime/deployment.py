"""The deployment of the current flow run, as `prefect.runtime.deployment`: `id`, `name`, `version`,
`flow_run_id`, `parameters`. Deployments do not exist yet, so every attribute is None (parameters: {})."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._mock import attribute

_GETTERS: dict[str, Callable[[], Any]] = {"id": lambda: None, "name": lambda: None, "version": lambda: None, "flow_run_id": lambda: None,
            "parameters": lambda: {}}


def __getattr__(name: str) -> Any:
    return attribute("deployment", name, _GETTERS)


__all__ = list(_GETTERS)
