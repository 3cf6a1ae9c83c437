"""A compact `.map()` on a cluster runner (`engine.fanout`): its runs go out in batches made from its columns and
come back as arrays (start and end times) and lists of values, one per batch; a task-run record, a state or a
future of one of its runs is made only when asked for (`future(i)`, `FanoutFutureList[i]`, a hook of the
driver's that needs runs one by one). A batch that needs its runs one by one (a run that failed or retried, a
lost worker, a cancellation) is made ordinary (`driver.Batch.degrade`) and goes the usual way from there.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ...engine.fanout import Fanout
from ...engine.futures import FutureList
from ...engine.spec import HasTaskSpec
from ...states import State

# The driver's classes (`driver.Batch`, `RemoteFuture`, `RemoteTaskRunner`) are not imported here (the driver imports
# this module, and hands the fan-out the class of its futures): they are `Any` below.


class RemoteFanout(Fanout):
    """A compact `.map()` of a cluster runner: its batches (`size` runs each, the last fewer), and the futures made
    so far (kept: a future asked for once is the same object when asked again)."""

    __slots__ = ("runner", "future_class", "size", "batches", "_futures", "cond", "list_ref")

    def __init__(self, runner: Any, future_class: type, task: HasTaskSpec, static: dict[str, Any],
                 mapped: dict[str, list[Any]], n: int, size: int) -> None:
        super().__init__(task.spec, static, mapped, n)
        self.runner = runner
        self.future_class = future_class
        self.size = size
        self.batches: list[Any] = []
        self._futures: dict[int, Any] = {}
        self.cond = threading.Condition(self.lock)  # notified when one of its batches settles or is made ordinary
        self.list_ref: Callable[[], Any] = lambda: None  # the FutureList handed to the user, while it lives

    def batch_of(self, i: int) -> tuple[Any, int]:
        b = self.batches[i // self.size]
        return b, i - b.lo

    def _outcome(self, i: int) -> tuple[tuple[State, ...], float, float, int, str | None] | None:
        b, j = self.batch_of(i)
        if b.settled_compact and b._runs is None:
            return b.compact_states(j), b.starts[j], b.ends[j], 1, b.worker
        return None

    def future(self, i: int) -> Any:
        """Run `i`'s future (made on the first call, done at once if the run is)."""
        with self.lock:
            fut = self._futures.get(i)
            if fut is None:
                run = self.run(i)
                fut = self._futures[i] = self.future_class(run)
                if run.state.is_final():
                    fut._final = run.state
            return fut

    def unsettled(self) -> tuple[list[tuple[int, int]], list[Any]]:
        spans: list[tuple[int, int]] = []
        records: list[Any] = []
        with self.lock:
            for b in self.batches:
                if b._runs is None:
                    if not b.settled_compact:
                        spans.append((b.lo, b.lo + b.n))
                else:
                    records.extend(r for r in b._runs if len(r.state_history) <= 1)
        return spans, records

    def wanted(self) -> bool:
        """Whether a value of these runs may still be asked for: the future list lives, or a future was made."""
        return self.list_ref() is not None or bool(self._futures)

    def wait_settled(self, deadline: float | None) -> bool:
        """Wait until every batch has settled compactly or been made ordinary; False if `deadline` came first."""
        with self.cond:
            for b in self.batches:
                while not (b.settled_compact or b._runs is not None):
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self.cond.wait(left)
        return True


class FanRef:
    """Stands for the weak reference to a future in an ordinary batch's `futures`: run `i`'s future if it was
    made (one made later reads the run's final state from its record)."""

    __slots__ = ("fan", "i")

    def __init__(self, fan: RemoteFanout, i: int):
        self.fan, self.i = fan, i

    def __call__(self) -> Any:
        return self.fan._futures.get(self.i)


class FanoutFutureList(FutureList):
    """The futures of a compact `.map()`: a list whose futures are made when it is read as a list (one by one on
    indexing, all at once otherwise); `result()` and `wait()` need none of them."""

    def __init__(self, fan: RemoteFanout):
        super().__init__()
        self._fan: RemoteFanout | None = fan

    def _fill(self) -> None:
        fan = self._fan
        if fan is not None:
            self._fan = None
            list.extend(self, [fan.future(i) for i in range(fan.n)])

    def __len__(self) -> int:
        fan = self._fan
        return fan.n if fan is not None else list.__len__(self)

    def __getitem__(self, i: Any) -> Any:
        fan = self._fan
        if fan is not None and type(i) is int:
            k = i + fan.n if i < 0 else i
            if not 0 <= k < fan.n:
                raise IndexError("list index out of range")
            return fan.future(k)
        self._fill()
        return list.__getitem__(self, i)

    def __iter__(self) -> Any:
        self._fill()
        return list.__iter__(self)

    def wait(self, timeout: float | None = None) -> None:
        fan = self._fan
        if fan is None:
            return super().wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        if fan.wait_settled(deadline):
            for b in fan.batches:
                if b._runs is not None:
                    FutureList(fan.future(i) for i in range(b.lo, b.lo + b.n)).wait(_left(deadline))

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[Any]:
        fan = self._fan
        if fan is None:
            return super().result(timeout, raise_on_failure)
        deadline = None if timeout is None else time.monotonic() + timeout
        if not fan.wait_settled(deadline):
            raise TimeoutError(f"Task runs of {fan.spec.name!r} did not finish within {timeout} seconds.")
        need = [b for b in fan.batches if b._runs is None and not b.fetched]
        if need:
            fan.runner.fetch_values(need)
        out: list[Any] = []
        for b in fan.batches:
            if b._runs is None:
                out.extend(b.values)  # type: ignore[arg-type]
            else:
                futs = FutureList(fan.future(i) for i in range(b.lo, b.lo + b.n))
                out.extend(futs.result(_left(deadline), raise_on_failure))
        return out

    def __reduce_ex__(self, protocol: Any) -> Any:
        self._fill()
        return super().__reduce_ex__(protocol)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _filled(name: str) -> Callable[..., Any]:
    base = getattr(list, name)

    def method(self: FanoutFutureList, *args: Any, **kwargs: Any) -> Any:
        self._fill()
        return base(self, *args, **kwargs)

    method.__name__ = name
    return method


# Every other way of reading or changing the list sees all its futures.
for _name in ("__contains__", "__reversed__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__add__",
              "__mul__", "__rmul__", "__iadd__", "__imul__", "__setitem__", "__delitem__", "__repr__", "append",
              "extend", "insert", "pop", "remove", "clear", "index", "count", "copy", "sort", "reverse"):
    setattr(FanoutFutureList, _name, _filled(_name))

__all__ = ["RemoteFanout", "FanoutFutureList", "FanRef"]
