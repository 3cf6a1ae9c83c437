"""Tasks shared by tests that run the same task in different processes and on different runners. Their
identity (module + qualified name) is the same everywhere, so cache keys match across processes."""
from __future__ import annotations

import os
import sys

import cloudpickle

from distributary import task
from distributary.cache_policies import INPUTS

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # cluster workers need not import this module


@task(cache_policy=INPUTS - "marker")
def slow_square(x: int, marker: str) -> int:
    with open(marker, "a") as f:
        f.write(f"{os.getpid()}\n")
    return x * x


@task
def add_one(value: int) -> int:
    return value + 1


@task
def worker_pid() -> int:
    return os.getpid()
