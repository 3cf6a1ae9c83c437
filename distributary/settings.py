"""Settings read from `DISTRIBUTARY_*` environment variables, resolved when asked for (never cached at import)."""
from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

PREFIX = "DISTRIBUTARY_"
# The settings of the task call or flow run in progress (`overlay`): read before os.environ.
_overlay: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("distributary_settings",
                                                                                  default=None)


@contextlib.contextmanager
def overlay(env: Mapping[str, str] | None) -> Iterator[None]:
    """Within this context (this thread or task, and what it submits), `DISTRIBUTARY_*` values in `env` take
    precedence over `os.environ`. Settings travel with a task call as data (its `settings_env` snapshot): a worker
    runs the call inside `overlay(call.settings_env)` instead of changing its environment, so runs with different
    settings can share a worker process."""
    if not env:
        yield
        return
    outer = _overlay.get()
    token = _overlay.set({**outer, **env} if outer else dict(env))
    try:
        yield
    finally:
        _overlay.reset(token)


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _delays(value: str) -> float | list[float]:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if len(parts) == 1:
        return float(parts[0])
    return [float(p) for p in parts]


@dataclass(frozen=True)
class Setting:
    name: str
    default: Callable[[], Any]
    parse: Callable[[str], Any] = str
    help: str = ""
    secret: bool = False  # `config view` shows it masked

    @property
    def env(self) -> str:
        return PREFIX + self.name

    def value(self) -> Any:
        ov = _overlay.get()
        raw = ov.get(self.env) if ov is not None else None
        if raw is None:
            raw = os.environ.get(self.env)
        if raw is None:
            raw = profile_value(self.env)
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
        Setting("TASKS_DEFAULT_RETRY_DELAY_SECONDS", lambda: 0.0, _delays,
                "seconds between retries of tasks that do not set them (a number or a comma-separated list)"),
        Setting("TASK_RUNNER", lambda: "threads", str, "runner of flows that do not set one"),
        Setting("RUNSTORE_ENABLED", lambda: True, _bool,
                "record flow runs, task runs, logs and artifacts in the run store"),
        Setting("API_DATABASE_CONNECTION_URL", lambda: "", str,
                "run store database URL (postgresql://...); empty: the SQLite file DISTRIBUTARY_HOME/runs.db"),
        Setting("RUNSTORE_BUSY_TIMEOUT", lambda: 30.0, float, "seconds a SQLite writer waits for the file lock"),
        Setting("RUNSTORE_EXIT_TIMEOUT", lambda: 10.0, float,
                "seconds a process waits at exit for its run records to be written (the rest is spooled)"),
        Setting("RUNNER_POLL_INTERVAL", lambda: 2.0, float,
                "seconds between two polls of a serve() process for due runs and cancellations"),
        Setting("WORKER_HEARTBEAT_TIMEOUT", lambda: 90.0, float,
                "seconds without a worker heartbeat after which the runs it was running are Crashed"),
        Setting("API_URL", lambda: "", lambda v: v.strip().rstrip("/"),
                "URL of a distributary server's API (http://host:4200/api); empty: the embedded run store"),
        Setting("API_AUTH_STRING", lambda: "", str, "user:password the client sends to a server that requires it",
                secret=True),
        Setting("API_REQUEST_TIMEOUT", lambda: 30.0, float, "seconds the client waits for one API request"),
        Setting("SERVER_API_HOST", lambda: "127.0.0.1", str, "address `distributary server start` listens on"),
        Setting("SERVER_API_PORT", lambda: 4200, int, "port `distributary server start` listens on"),
        Setting("SERVER_API_AUTH_STRING", lambda: "", str,
                "user:password the server requires on every request (basic auth); empty: no auth", secret=True),
        Setting("SERVER_CORS_ALLOWED_ORIGINS", lambda: "", str,
                "comma-separated origins allowed to call the API from a browser (`*` for any); empty: none"),
        Setting("SERVER_API_MAX_BODY_BYTES", lambda: 64 * 1024 * 1024, int,
                "largest request body the server accepts (larger: HTTP 413)"),
        Setting("SERVER_API_READ_CACHE_ENTRIES", lambda: 512, int,
                "answers of repeated filter/count requests each server process keeps while the store is unchanged; "
                "0: none"),
        Setting("SERVER_WORKERS", lambda: 0, int,
                "server processes `distributary server start` runs; 0: one per CPU core, at most 4"),
        Setting("SERVER_SERVICES_SCHEDULER_ENABLED", lambda: True, _bool,
                "the server creates the scheduled runs of every deployment ahead of time"),
        Setting("SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", lambda: 5.0, float,
                "seconds between two passes of the server's scheduler"),
        Setting("SERVER_SERVICES_LATE_RUNS_ENABLED", lambda: True, _bool,
                "the server marks Late runs and Crashes the runs of workers whose heartbeats stopped"),
        Setting("SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS", lambda: 5.0, float,
                "seconds between two passes of the late-runs and heartbeat service"),
    ]
}


def get(name: str) -> Any:
    """The current value of setting `name` (without the prefix), e.g. `get("HOME")`."""
    return SETTINGS[name].value()


def snapshot() -> dict[str, str]:
    """The `DISTRIBUTARY_*` variables set in this process, to ship to workers with a task."""
    env = {k: v for k, v in os.environ.items() if k.startswith(PREFIX)}
    ov = _overlay.get()
    if ov:
        env.update(ov)
    if profiles_path().exists():  # workers elsewhere have no profiles file: ship the profile's values too
        env = {**{k: str(v) for k, v in active_profile_settings().items()}, **env}
    return env


def view(show_defaults: bool = True) -> list[tuple[str, str, str]]:
    """(variable, value, source) for `distributary config view`; source is env, profile or default."""
    rows = []
    prof = active_profile_settings()
    for s in SETTINGS.values():
        source = "env" if s.env in os.environ else "profile" if s.env in prof else "default"
        if source != "default" or show_defaults:
            value = str(s.value())
            rows.append((s.env, "********" if s.secret and value else value, source))
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Profiles: named sets of settings in DISTRIBUTARY_HOME/profiles.toml (precedence: environment > profile > default)
# ---------------------------------------------------------------------------------------------------------------
PROFILE_ENV = PREFIX + "PROFILE"     # chooses the active profile for one process
DEFAULT_PROFILE = "default"
_profiles_cache: tuple[Any, dict[str, Any]] = (None, {})


def profiles_path() -> Path:
    return _home() / "profiles.toml"


def load_profiles() -> dict[str, Any]:
    """`{"active": name, "profiles": {name: {VAR: value}}}` from profiles.toml (cached until the file changes)."""
    global _profiles_cache
    path = profiles_path()
    try:
        st = path.stat()
    except OSError:
        return {"active": DEFAULT_PROFILE, "profiles": {DEFAULT_PROFILE: {}}}
    key = (str(path), st.st_mtime_ns, st.st_size)
    if _profiles_cache[0] == key:
        return _profiles_cache[1]
    import tomllib

    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"the profiles file {path} cannot be read ({exc}): fix or delete it") from exc
    data.setdefault("active", DEFAULT_PROFILE)
    profiles = data.setdefault("profiles", {})
    profiles.setdefault(DEFAULT_PROFILE, {})
    _profiles_cache = (key, data)
    return data


def save_profiles(data: dict[str, Any]) -> None:
    """Write profiles.toml atomically (string values; names and variables are quoted)."""
    path = profiles_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"active = {_toml_str(data.get('active', DEFAULT_PROFILE))}", ""]
    for name, values in data.get("profiles", {}).items():
        lines.append(f"[profiles.{_toml_str(name)}]")
        lines += [f"{_toml_str(k)} = {_toml_str(str(v))}" for k, v in values.items()]
        lines.append("")
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def active_profile_name() -> str:
    return os.environ.get(PROFILE_ENV) or load_profiles().get("active") or DEFAULT_PROFILE


def active_profile_settings() -> dict[str, Any]:
    data = load_profiles()
    return data["profiles"].get(active_profile_name(), {})


def profile_value(env: str) -> str | None:
    """The active profile's value of variable `env`, or None."""
    if _profiles_cache[0] is None and not profiles_path().exists():
        return None
    v = active_profile_settings().get(env)
    return None if v is None else str(v)
