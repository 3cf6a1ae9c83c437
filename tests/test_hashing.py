"""stable_hash: equal inputs hash equal in any process and order; different inputs differ; errors name the argument."""
from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import pathlib
import subprocess
import sys
import threading
import uuid
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pydantic
import pytest

from distributary.errors import CacheKeyError
from distributary.hashing import hash_parameters, stable_hash, task_input_hash


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Config:
    name: str
    size: int


class Settings(pydantic.BaseModel):
    name: str
    ratio: float


VALUES: list[Any] = [
    None, True, False, 0, 1, -7, 10**40, 1.5, float("inf"), "", "text", "ünïcode", b"", b"bytes", [1, 2], (1, 2),
    {"a": 1}, {1, 2}, frozenset({1}), dt.datetime(2024, 1, 2, 3, 4, 5), dt.date(2024, 1, 2), dt.time(1, 2),
    dt.timedelta(seconds=3), uuid.UUID(int=5), decimal.Decimal("2.5"), Level.LOW, pathlib.PurePosixPath("/a"),
    Config("c", 1), Settings(name="s", ratio=0.5), np.arange(6).reshape(2, 3), np.float32(1.5),
    pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}), pd.Series([1.0, 2.0], name="s"), complex(1, 2),
]

# A digest pinned in the repository: it must never change across processes, machines or Python versions.
PINNED = ("e77880f78027cc19ec03e115f5cd62fcabd6535ec5f83aa69fb5e2544b5480e4", {"a": [1, 2.5, None, "x"],
                                                                          "b": (True, b"\x00")})


def test_all_supported_values_hash_and_differ_from_each_other() -> None:
    digests = [stable_hash(v) for v in VALUES]
    assert all(len(d) == 64 for d in digests)
    assert len(set(digests)) == len(VALUES)


def test_equal_values_hash_equal() -> None:
    assert stable_hash({"b": 1, "a": 2}) == stable_hash({"a": 2, "b": 1})
    assert stable_hash({3, 1, 2}) == stable_hash({2, 3, 1})
    assert stable_hash(decimal.Decimal("1.0")) == stable_hash(decimal.Decimal("1.00"))
    assert stable_hash(0.0) == stable_hash(-0.0) and stable_hash(float("nan")) == stable_hash(float("nan"))
    assert stable_hash(np.arange(3)) == stable_hash(np.array([0, 1, 2]))
    assert stable_hash(pd.DataFrame({"x": [1]})) == stable_hash(pd.DataFrame({"x": [1]}))


def test_type_matters_where_values_differ_in_kind() -> None:
    assert stable_hash(1) != stable_hash(1.0) != stable_hash("1")
    assert stable_hash([1, 2]) != stable_hash((1, 2))
    assert stable_hash(True) != stable_hash(1)
    assert stable_hash("ab", "c") != stable_hash("a", "bc")  # no ambiguity from concatenation
    assert stable_hash(np.arange(3, dtype=np.int32)) != stable_hash(np.arange(3, dtype=np.int64))
    assert stable_hash(Config("a", 1)) != stable_hash(Config("a", 2))


def test_same_digest_in_another_process_with_other_hash_seed() -> None:
    code = ("from distributary.hashing import stable_hash; import datetime as dt, uuid;"
            "print(stable_hash({'k': {1, 2, 'x'}, 'd': dt.date(2024, 1, 1), 'u': uuid.UUID(int=9)}, [frozenset('ab')]))")
    here = stable_hash({"k": {1, 2, "x"}, "d": dt.date(2024, 1, 1), "u": uuid.UUID(int=9)}, [frozenset("ab")])
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                             env={"PYTHONHASHSEED": seed, "PATH": ""})
        assert out.stdout.strip() == here, out.stderr


def test_pinned_digest_never_changes() -> None:
    digest, value = PINNED
    assert stable_hash(value) == digest


def test_other_picklable_objects_fall_back_to_pickle() -> None:
    assert stable_hash(range(3)) == stable_hash(range(3)) != stable_hash(range(4))


def test_unhashable_values_raise_cache_key_error() -> None:
    with pytest.raises(CacheKeyError, match="lock"):
        stable_hash(threading.Lock())
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(CacheKeyError, match="contains itself"):
        stable_hash(loop)


def test_hash_parameters_names_the_bad_argument_and_the_fix() -> None:
    with pytest.raises(CacheKeyError) as info:
        hash_parameters({"x": 1, "client": threading.Lock()})
    message = str(info.value)
    assert "'client'" in message and "INPUTS - 'client'" in message and "cache_key_fn" in message
    assert hash_parameters({"x": 1, "client": threading.Lock()}, exclude={"client"}) == hash_parameters({"x": 1})
    assert hash_parameters({"a": 1, "b": 2}) == hash_parameters({"b": 2, "a": 1})


def test_task_input_hash() -> None:
    def fn(x: int) -> int:
        return x

    def other(x: int) -> int:
        return x + 1

    ctx = SimpleNamespace(task=SimpleNamespace(task_key="mod.fn", fn=fn))
    key = task_input_hash(ctx, {"x": 1})
    assert key == task_input_hash(ctx, {"x": 1}) != task_input_hash(ctx, {"x": 2})
    assert key != task_input_hash(SimpleNamespace(task=SimpleNamespace(task_key="mod.fn", fn=other)), {"x": 1})
    assert key != task_input_hash(SimpleNamespace(task=SimpleNamespace(task_key="mod.g", fn=fn)), {"x": 1})
