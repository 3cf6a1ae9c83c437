"""Run loggers: `get_run_logger()` in flows and tasks, `log_prints`, and the console format.

Console lines carry time, level and the run's name. The level comes from `DISTRIBUTARY_LOGGING_LEVEL`.
Records made on remote workers are shipped to the driver by the runner and re-emitted with `emit_remote()`.
"""
from __future__ import annotations

import builtins
import contextvars
import io
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from .. import settings
from ..context import flow_run_ctx, task_run_ctx

ROOT = "distributary"
_configured = False
_config_lock = threading.Lock()
# Extra handlers that see every distributary record (e.g. a remote worker's forwarder).
_forwarders: list[logging.Handler] = []


class ConsoleHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is emitted (so redirections are honoured)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _RunNameDefault(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "run_name"):
            record.run_name = record.name
        return True


def setup_logging(force: bool = False) -> None:
    """Attach the console handler to the `distributary` logger once per process."""
    global _configured
    if _configured and not force:
        return
    with _config_lock:
        if _configured and not force:
            return
        logger = logging.getLogger(ROOT)
        for h in list(logger.handlers):
            if getattr(h, "_distributary_console", False):
                logger.removeHandler(h)
        handler = ConsoleHandler()
        handler._distributary_console = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(settings.get("LOGGING_FORMAT"), datefmt="%H:%M:%S"))
        handler.addFilter(_RunNameDefault())
        logger.addHandler(handler)
        logger.setLevel(settings.get("LOGGING_LEVEL"))
        logger.propagate = False
        _configured = True


class RunLoggerAdapter(logging.LoggerAdapter):
    """Adds the run's name and id to every record."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = kwargs.get("extra")
        kwargs["extra"] = {**(self.extra or {}), **extra} if extra else self.extra
        return msg, kwargs


def get_run_logger() -> logging.LoggerAdapter:
    """A logger for the current task run or flow run (Prefect's `get_run_logger`)."""
    setup_logging()
    tctx = task_run_ctx.get()
    if tctx is not None:
        run = tctx.task_run
        return RunLoggerAdapter(logging.getLogger(f"{ROOT}.task_runs"),
                                {"run_name": run.name, "run_id": str(run.id), "run_kind": "task",
                                 "flow_run_id": None if run.flow_run_id is None else str(run.flow_run_id)})
    fctx = flow_run_ctx.get()
    if fctx is not None and fctx.flow_run is not None:
        frun = fctx.flow_run
        return RunLoggerAdapter(logging.getLogger(f"{ROOT}.flow_runs"),
                                {"run_name": frun.name, "run_id": str(frun.id), "run_kind": "flow"})
    from ..errors import DistributaryError

    raise DistributaryError("get_run_logger() was called outside a flow run or task run; "
                            "use logging.getLogger(...) there instead.")


def engine_logger(name: str) -> logging.Logger:
    setup_logging()
    return logging.getLogger(f"{ROOT}.{name}")


def emit_remote(record_dict: dict[str, Any]) -> None:
    """Re-emit a record shipped from a worker on the driver's console."""
    setup_logging()
    record = logging.makeLogRecord(record_dict)
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)


def record_to_dict(record: logging.LogRecord) -> dict[str, Any]:
    """A picklable form of a record (message formatted, exception rendered to text)."""
    d = {k: v for k, v in record.__dict__.items() if k in _RECORD_FIELDS}
    d["msg"] = record.getMessage()
    d["args"] = None
    if record.exc_info:
        d["exc_text"] = logging.Formatter().formatException(record.exc_info)
    d["exc_info"] = None
    return d


_RECORD_FIELDS = {"name", "levelno", "levelname", "pathname", "lineno", "funcName", "created", "msecs",
                  "relativeCreated", "thread", "threadName", "process", "processName", "run_name", "run_id",
                  "run_kind", "flow_run_id", "exc_text"}


# -- log_prints ---------------------------------------------------------------------------------------------------
_print_to_log: contextvars.ContextVar[bool] = contextvars.ContextVar("log_prints", default=False)
_original_print: Callable[..., None] = builtins.print
_print_patched = False


def _logging_print(*args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None,
                   flush: bool = False) -> None:
    if _print_to_log.get() and file in (None, sys.stdout, sys.stderr):
        buf = io.StringIO()
        _original_print(*args, sep=sep, end="", file=buf)
        try:
            get_run_logger().info(buf.getvalue())
            return
        except Exception:  # outside a run (e.g. a thread the user started): print normally
            pass
    _original_print(*args, sep=sep, end=end, file=file, flush=flush)


def enable_print_logging() -> None:
    """Route `print` to the run logger in runs that ask for it (`log_prints=True`). Installed once."""
    global _print_patched
    if not _print_patched:
        builtins.print = _logging_print
        _print_patched = True


def set_log_prints(value: bool) -> contextvars.Token:
    if value:
        enable_print_logging()
    return _print_to_log.set(value)


def reset_log_prints(token: contextvars.Token) -> None:
    _print_to_log.reset(token)
