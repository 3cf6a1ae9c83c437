"""`gc_paused()`: the cyclic garbage collector held off while a `.map()` builds or applies its per-run records.

A fan-out of 10^5 runs allocates several container objects per run (record, call, future, weak reference,
states); each 700 of them start a young-generation collection and the growing heap triggers full ones, which
together cost more than making the objects (measured: 0.29 s -> 0.13 s for the records and calls of 10^5 runs,
0.19 s -> 0.04 s for their futures). None of these objects is garbage while it is being built, so collecting
then finds nothing. Reference counting still frees everything as usual; the collector resumes when the last
pause in the process ends (pauses nest and may overlap across threads) and only if it was on when the first
began (a program that turned it off keeps it off).
"""
from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_reenable = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off the cyclic collector for the duration of the block (see the module docstring)."""
    global _depth, _reenable
    with _lock:
        if _depth == 0:
            _reenable = gc.isenabled()
            if _reenable:
                gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _reenable:
                _reenable = False
                gc.enable()


__all__ = ["gc_paused"]
