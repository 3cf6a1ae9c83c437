"""Packing policy: how many task runs of a `.map()` go into one cluster task (see the package docstring)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")
PER_THREAD = 4
MAX_BATCH = 1000
COMPACT_MAX_BATCH = 5000  # a compact .map()'s batches (`remote/fanout.py`): its runs cost the driver nothing each


def choose_batch_size(n_calls: int, worker_threads: int, batch_size: int | None = None,
                      per_thread: int = PER_THREAD, cap: int = MAX_BATCH) -> int:
    """Task runs per cluster task for a `.map()` of `n_calls` runs (see the module docstring)."""
    if batch_size is not None:
        return max(1, batch_size)
    return max(1, min(cap, math.ceil(n_calls / (max(1, worker_threads) * per_thread))))


def plan_batches(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """Consecutive chunks of `items`, `size` each (the last may be shorter)."""
    return [items[i:i + size] for i in range(0, len(items), size)]


__all__ = ["PER_THREAD", "MAX_BATCH", "COMPACT_MAX_BATCH", "choose_batch_size", "plan_batches"]
