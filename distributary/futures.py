"""Prefect's module path for futures (`from distributary.futures import wait, as_completed`); the futures
themselves live in `distributary.engine.futures` (the resolvers in `engine.resolve`), where the engine and the runners
use them."""
from __future__ import annotations

from .engine.futures import (
                             DoneAndNotDoneFutures,
                             FutureList,
                             PrefectFuture,
                             PrefectFutureList,
                             SettableFuture,
                             TaskRunFuture,
                             as_completed,
                             call_back,
                             wait,
)
from .engine.resolve import resolve_futures_to_results, resolve_futures_to_states

__all__ = ["TaskRunFuture", "SettableFuture", "PrefectFuture", "FutureList", "PrefectFutureList", "wait", "as_completed",
           "DoneAndNotDoneFutures", "resolve_futures_to_states", "resolve_futures_to_results", "call_back"]
