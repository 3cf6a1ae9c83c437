"""Log handlers at Prefect's `prefect.logging.handlers` path. `PrefectConsoleHandler` is distributary's console
handler (time, level, run name), under Prefect's name."""
from __future__ import annotations

from . import ConsoleHandler

PrefectConsoleHandler = ConsoleHandler

__all__ = ["ConsoleHandler", "PrefectConsoleHandler"]
