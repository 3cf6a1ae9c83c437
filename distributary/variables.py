"""Variables: small named JSON values shared by every run (Prefect 3's `prefect.variables.Variable`).

    from distributary.variables import Variable

    Variable.set("threshold", {"max": 10})
    Variable.get("threshold")            # {'max': 10}
    Variable.get("missing", default=3)   # 3
    Variable.unset("threshold")          # True
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import BaseModel, Field

from .errors import ConfigurationError


class VariableValueError(ConfigurationError):
    """A variable's value is not JSON (str, number, bool, None, or lists and dicts of them)."""


def _check_json(name: str, value: Any) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise VariableValueError(f"the value of variable {name!r} is not JSON ({exc}): use str, int, float, bool, "
                                 "None, or lists and dicts of them") from None


class Variable(BaseModel):
    """A named JSON value in the run store."""

    name: str
    value: Any = None
    tags: list[str] | None = Field(default=None)

    @classmethod
    def set(cls, name: str, value: Any, tags: list[str] | None = None, overwrite: bool = False) -> Variable:
        """Create the variable; replacing an existing one needs `overwrite=True` (ValueError otherwise)."""
        from .runstore import get_storage

        _check_json(name, value)
        got = get_storage().set_variable(name, value, tags=tags, overwrite=overwrite)
        return cls(name=got.name, value=got.value, tags=got.tags)

    @classmethod
    def get(cls, name: str, default: Any = None) -> Any:
        """The variable's value, or `default` when there is no such variable."""
        from .runstore import get_storage

        got = get_storage().read_variable_by_name(name)
        return default if got is None else got.value

    @classmethod
    def unset(cls, name: str) -> bool:
        """Delete the variable; whether it existed."""
        from .runstore import get_storage

        return bool(get_storage().delete_variable_by_name(name))

    @classmethod
    async def aset(cls, name: str, value: Any, tags: list[str] | None = None,
                   overwrite: bool = False) -> Variable:
        return await asyncio.to_thread(cls.set, name, value, tags, overwrite)

    @classmethod
    async def aget(cls, name: str, default: Any = None) -> Any:
        return await asyncio.to_thread(cls.get, name, default)

    @classmethod
    async def aunset(cls, name: str) -> bool:
        return await asyncio.to_thread(cls.unset, name)


__all__ = ["Variable", "VariableValueError"]
