"""Tag-based task-run concurrency limits in a task run's steps: a run whose tags have limits (the run store's
limits named `tag:TAG`, `distributary concurrency-limit create TAG N`) takes a slot of each before its first
attempt, waits while one is full (in state `AwaitingConcurrencySlot`), and gives them back when it ends. Runs
without tags cost nothing; the list of limited tags is read at most every few seconds per process."""
from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

from .. import states as S
from . import transitions
from .drivers import IO, SLEEP, Step

_log = logging.getLogger("distributary.concurrency")
_warned = False


def _limited(tags: frozenset[str]) -> list[str]:
    """Those of the run's tags that have a limit; none (with one warning per process) if the store cannot say."""
    global _warned
    from ..runstore import slots

    try:
        return slots.limited_tags(tags)
    except Exception as exc:
        if not _warned:
            _warned = True
            _log.warning("Could not read the tag concurrency limits from the run store (%s): tasks run without them.",
                         exc)
        return []


def has_limits(tags: frozenset[str]) -> bool:
    """Whether any of `tags` has a limit (a run without tags asks nothing)."""
    return bool(tags) and bool(_limited(tags))


def take_slots(run: Any) -> Generator[Step, Any, Any]:
    """Take a slot of each limited tag of `run` (waiting for them); the acquisition to `give_back`, or None."""
    limited = yield (IO, lambda: _limited(run.tags))
    if not limited:
        return None
    from ..runstore import slots
    from ..schemas.concurrency import TAG_PREFIX

    gen = slots.acquire_steps([TAG_PREFIX + t for t in limited], 1, "concurrency", holder={
        "type": "task_run", "id": str(run.id)}, warn_missing=False)
    waited = False
    try:
        step = next(gen)
        while True:
            if callable(step):
                try:
                    value = yield (IO, step)
                except BaseException as exc:
                    step = gen.throw(exc)
                    continue
                step = gen.send(value)
            else:
                if not waited:
                    waited = True
                    transitions.set_state(run, S.Scheduled(name="AwaitingConcurrencySlot", message=(
                        f"Waiting for a concurrency slot of tag(s) {', '.join(limited)}.")))
                yield (SLEEP, step)
                step = next(gen)
    except StopIteration as stop:
        return stop.value


def give_back(got: Any) -> None:
    if got is not None:
        from ..runstore import slots

        slots.release(got)
