"""Environment overrides of runtime attributes, as Prefect's `PREFECT__RUNTIME__{SUBMODULE}__{KEY}` with our
prefix: `DISTRIBUTARY__RUNTIME__TASK_RUN__NAME=x`. A value overriding a known attribute is cast to that
attribute's type (bool, int, float, str, datetime); an unknown key is returned as a string."""
from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable
from typing import Any

PREFIX = "DISTRIBUTARY__RUNTIME__"


def _cast(raw: str, like: Any) -> Any:
    if isinstance(like, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(like, int):
        return int(raw)
    if isinstance(like, float):
        return float(raw)
    if isinstance(like, _dt.datetime):
        return _dt.datetime.fromisoformat(raw)
    return raw


def attribute(submodule: str, name: str, getters: dict[str, Callable[[], Any]]) -> Any:
    """The value of `submodule.name`: the environment override if set, else the getter's value (None when the
    value is not available, never an error)."""
    getter = getters.get(name)
    raw = os.environ.get(f"{PREFIX}{submodule.upper()}__{name.upper()}")
    if getter is None:
        if raw is not None:
            return raw
        raise AttributeError(f"distributary.runtime.{submodule} has no attribute {name!r}; available: "
                             f"{', '.join(sorted(getters))}")
    if raw is not None:
        try:
            return _cast(raw, getter())
        except (TypeError, ValueError):
            return raw
    return getter()
