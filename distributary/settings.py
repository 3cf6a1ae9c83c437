"""Settings read from `DISTRIBUTARY_*` environment variables, resolved when asked for (never cached at import)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigurationError

PREFIX = "DISTRIBUTARY_"


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


@dataclass(frozen=True)
class Setting:
    name: str
    default: Callable[[], Any]
    parse: Callable[[str], Any] = str
    help: str = ""

    @property
    def env(self) -> str:
        return PREFIX + self.name

    def value(self) -> Any:
        raw = os.environ.get(self.env)
        if raw is None:
            return self.default()
        try:
            return self.parse(raw)
        except ValueError as exc:
            raise ConfigurationError(f"{self.env}={raw!r} is not valid: {exc}") from exc


def _home() -> Path:
    return Path(os.environ.get(PREFIX + "HOME") or "~/.distributary").expanduser()


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting("HOME", lambda: _home(), lambda v: Path(v).expanduser(), "root folder for local state"),
        Setting("LOGGING_LEVEL", lambda: "INFO", lambda v: v.upper(), "level of distributary's console logs"),
        Setting("LOGGING_FORMAT", lambda: "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(run_name)s - %(message)s",
                str, "console log line format"),
        Setting("RESULTS_PERSIST_BY_DEFAULT", lambda: False, _bool, "persist every task result"),
        Setting("RESULTS_DEFAULT_STORAGE", lambda: str(_home() / "storage"), str,
                "result store URL used when none is set on the task or flow"),
        Setting("RESULTS_DEFAULT_SERIALIZER", lambda: "cloudpickle", str, "serializer used when none is set"),
        Setting("RESULTS_LOCK_LEASE_SECONDS", lambda: 60.0, float, "lifetime of a SERIALIZABLE cache-key lock lease"),
        Setting("TASKS_DEFAULT_RETRIES", lambda: 0, int, "retries of tasks that do not set them"),
        Setting("TASK_RUNNER", lambda: "threads", str, "runner of flows that do not set one"),
        Setting("RUNSTORE_ENABLED", lambda: True, _bool,
                "record flow runs, task runs, logs and artifacts in the run store"),
        Setting("API_DATABASE_CONNECTION_URL", lambda: "", str,
                "run store database URL (postgresql://...); empty: the SQLite file DISTRIBUTARY_HOME/runs.db"),
        Setting("RUNSTORE_BUSY_TIMEOUT", lambda: 30.0, float, "seconds a SQLite writer waits for the file lock"),
        Setting("RUNSTORE_EXIT_TIMEOUT", lambda: 10.0, float,
                "seconds a process waits at exit for its run records to be written (the rest is spooled)"),
    ]
}


def get(name: str) -> Any:
    """The current value of setting `name` (without the prefix), e.g. `get("HOME")`."""
    return SETTINGS[name].value()


def snapshot() -> dict[str, str]:
    """The `DISTRIBUTARY_*` variables set in this process, to ship to workers with a task."""
    return {k: v for k, v in os.environ.items() if k.startswith(PREFIX)}


def view(show_defaults: bool = True) -> list[tuple[str, str, str]]:
    """(variable, value, source) for `distributary config view`."""
    rows = []
    for s in SETTINGS.values():
        set_here = s.env in os.environ
        if set_here or show_defaults:
            rows.append((s.env, str(s.value()), "env" if set_here else "default"))
    return rows
