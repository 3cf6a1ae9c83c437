"""The current flow run and task run, held in contextvars so threads and asyncio tasks each see their own."""
from __future__ import annotations

import contextlib
import contextvars
import itertools
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .runs import FlowRun, RunRecorder, TaskRun


# The contexts sit below the engine, the runners and the public API, so what they hold of those is typed by
# these Protocols (implemented by engine.spec.FlowSpec, runners.base.TaskRunner and tasks.Task).
class FlowOptions(Protocol):
    """The flow a run belongs to, as the engine reads it (an `engine.spec.FlowSpec`)."""

    @property
    def owner(self) -> Any: ...  # the Flow
    @property
    def persist_result(self) -> bool | None: ...
    @property
    def result_storage(self) -> Any: ...
    @property
    def result_serializer(self) -> Any: ...
    @property
    def cache_result_in_memory(self) -> bool: ...
    @property
    def isolation_level(self) -> Any: ...


class TaskRunnerLike(Protocol):
    """The flow run's task runner (a `runners.base.TaskRunner`)."""

    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any = None, dependencies: Any = None) -> Any:
        ...

    def map(self, task: Any, parameters: dict[str, Any], wait_for: Any = None) -> Any: ...


class TaskLike(Protocol):
    """The task a run belongs to (a `tasks.Task`), as cache policies, storage keys and run names read it."""

    @property
    def name(self) -> str: ...
    @property
    def task_key(self) -> str: ...
    @property
    def fn(self) -> Any: ...


class FlowRunContext:
    """What tasks submitted inside a flow run need: the runner, the flow's result options and the run record."""

    __slots__ = ("flow_spec", "flow_run", "task_runner", "parameters", "recorder", "log_prints", "_counters",
                 "_counter_lock", "result_options_cache", "settings_env", "deadline", "result_runs")

    def __init__(self, flow_spec: FlowOptions | None, flow_run: FlowRun | None, task_runner: TaskRunnerLike,
                 parameters: dict[str, Any], recorder: RunRecorder, log_prints: bool = False,
                 settings_env: dict[str, str] | None = None):
        self.flow_spec = flow_spec
        self.flow_run = flow_run
        self.task_runner = task_runner
        self.parameters = parameters
        self.recorder = recorder
        self.log_prints = log_prints
        self._counters: dict[str, itertools.count] = {}
        self._counter_lock = threading.Lock()
        self.result_options_cache: dict[Any, Any] = {}  # task spec -> its result options in this flow run
        self.settings_env = settings_env or {}
        self.deadline: float | None = None  # time.monotonic() past which the flow run timed out
        # id(value) -> (task run id, weak reference or None) for the values direct task calls returned, so that
        # `b(a())` records a's run as an input of b's (engine.resolve.link_result / task_inputs)
        self.result_runs: dict[int, tuple[str, Any]] = {}

    @property
    def flow(self) -> Any:
        """The Flow this run belongs to."""
        return self.flow_spec.owner if self.flow_spec is not None else None

    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def timed_out_error(self) -> Exception:
        from .errors import FlowRunTimeoutError

        name = self.flow_run.name if self.flow_run is not None else "?"
        seconds = getattr(self.flow_spec, "timeout_seconds", None)
        return FlowRunTimeoutError(f"Flow run {name!r} exceeded its timeout of {seconds} seconds: it takes no new "
                                   f"task runs (its function ran on after the deadline; let it return, or re-raise, "
                                   f"when it catches the timeout).")

    @classmethod
    def get(cls) -> FlowRunContext | None:
        """The flow run context of this thread or asyncio task, or None (Prefect's `FlowRunContext.get()`)."""
        return flow_run_ctx.get()

    @property
    def flow_run_id(self) -> uuid.UUID | None:
        return self.flow_run.id if self.flow_run is not None else None

    def next_dynamic_keys(self, task_key: str, n: int) -> range:
        """n consecutive run numbers for task `task_key` in this flow run (names are `task-0`, `task-1`, ...).
        Every task call of the flow run passes here: past the run's timeout it is refused."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise self.timed_out_error()
        with self._counter_lock:
            counter = self._counters.get(task_key)
            if counter is None:
                counter = self._counters[task_key] = itertools.count()
            first = next(counter)
            if n > 1:
                self._counters[task_key] = itertools.count(first + n)
        return range(first, first + n)


class TaskRunContext:
    """The task run being executed in this thread or asyncio task (also on remote workers)."""

    __slots__ = ("task", "task_run", "parameters", "flow_parameters", "log_prints", "result_options")

    def __init__(self, task: TaskLike, task_run: TaskRun, parameters: dict[str, Any],
                 flow_parameters: dict[str, Any], log_prints: bool, result_options: Any):
        self.task = task
        self.task_run = task_run
        self.parameters = parameters
        self.flow_parameters = flow_parameters
        self.log_prints = log_prints
        self.result_options = result_options

    @classmethod
    def get(cls) -> TaskRunContext | None:
        """The task run context of this thread or asyncio task, or None (Prefect's `TaskRunContext.get()`)."""
        return task_run_ctx.get()


flow_run_ctx: contextvars.ContextVar[FlowRunContext | None] = contextvars.ContextVar("flow_run", default=None)
task_run_ctx: contextvars.ContextVar[TaskRunContext | None] = contextvars.ContextVar("task_run", default=None)


def get_run_context() -> TaskRunContext | FlowRunContext:
    """The innermost run context (task run first, then flow run); raises if called outside any run."""
    ctx = task_run_ctx.get() or flow_run_ctx.get()
    if ctx is None:
        from .errors import DistributaryError

        raise DistributaryError("No run context: get_run_context() was called outside a flow or task run.")
    return ctx


current_tags: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("tags", default=frozenset())


def serialize_context() -> dict[str, Any]:
    """The current run context as a picklable dict, to hand to another process (Prefect's `serialize_context`):
    there, `with hydrated_context(ctx):` makes the flow run, task run, tags and settings current again, so
    `get_run_logger()`, `distributary.runtime` and task calls work as they do in the run itself."""
    import cloudpickle  # the flow and task by value: a decorated function is not importable by its name

    fctx, tctx = flow_run_ctx.get(), task_run_ctx.get()
    return {
        "flow_run_context": {} if fctx is None else {
            "flow": cloudpickle.dumps(fctx.flow_spec), "flow_run": fctx.flow_run, "parameters": fctx.parameters,
            "log_prints": fctx.log_prints, "settings_env": fctx.settings_env},
        "task_run_context": {} if tctx is None else {
            "task": cloudpickle.dumps((tctx.task, tctx.result_options)), "task_run": tctx.task_run,
            "parameters": tctx.parameters, "flow_parameters": tctx.flow_parameters, "log_prints": tctx.log_prints},
        "tags_context": {"current_tags": sorted(current_tags.get())},
        "settings_context": {"env": fctx.settings_env if fctx is not None else {}},
    }


@contextlib.contextmanager
def hydrated_context(serialized_context: dict[str, Any] | None = None, client: Any = None) -> Any:
    """Make a `serialize_context()` dict from another process the current context for the block (Prefect's
    `hydrated_context`; `client` is accepted for Prefect's signature and not needed). The flow run gets a fresh
    copy of its flow's task runner, started for the block; logs of the block are recorded in the run store as
    the run's own, and written before the block ends."""
    import pickle

    from . import settings
    from .runs import get_recorder, sink_hub

    ctx = serialized_context or {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(settings.overlay((ctx.get("settings_context") or {}).get("env") or None))
        tokens: list[tuple[contextvars.ContextVar[Any], contextvars.Token[Any]]] = []
        fr = ctx.get("flow_run_context") or {}
        if fr:
            spec = pickle.loads(fr["flow"])
            runner: Any = stack.enter_context(spec.make_runner()) if spec is not None else None
            fctx = FlowRunContext(spec, fr["flow_run"], runner, fr.get("parameters") or {}, get_recorder(),
                                  bool(fr.get("log_prints")), fr.get("settings_env"))
            tokens.append((flow_run_ctx, flow_run_ctx.set(fctx)))
        tr = ctx.get("task_run_context") or {}
        if tr:
            task, result_options = pickle.loads(tr["task"])
            tokens.append((task_run_ctx, task_run_ctx.set(TaskRunContext(
                task, tr["task_run"], tr.get("parameters") or {}, tr.get("flow_parameters") or {},
                bool(tr.get("log_prints")), result_options))))
        run_tags = (ctx.get("tags_context") or {}).get("current_tags")
        if run_tags:
            tokens.append((current_tags, current_tags.set(current_tags.get() | frozenset(run_tags))))
        if fr or tr:
            from .runstore import ensure_sink

            ensure_sink()  # this process's logs of the run go to the run store too
        try:
            yield
        finally:
            for var, token in reversed(tokens):
                var.reset(token)
            if fr or tr:
                try:
                    sink_hub().flush(10.0)
                except Exception:  # recording never breaks the block's end
                    pass


@contextlib.contextmanager
def tags(*new_tags: str):
    """Add tags to every task run created inside the block (Prefect's `with tags("etl"):`)."""
    token = current_tags.set(current_tags.get() | frozenset(new_tags))
    try:
        yield current_tags.get()
    finally:
        current_tags.reset(token)


class DeploymentRunSpec:
    """A flow run created ahead of time (a deployment's run): the process that executes it sets this, and the
    next top-level flow run takes its id, name, tags and scheduled time instead of new ones."""

    __slots__ = ("id", "name", "tags", "expected_start_ts", "deployment_id", "deployment_name", "deployment_version",
                 "parameters")

    def __init__(self, id: uuid.UUID, name: str, tags: frozenset[str] = frozenset(),
                 expected_start_ts: float | None = None, deployment_id: uuid.UUID | None = None,
                 deployment_name: str | None = None, deployment_version: str | None = None,
                 parameters: dict[str, Any] | None = None):
        self.id = id
        self.name = name
        self.tags = tags
        self.expected_start_ts = expected_start_ts
        self.deployment_id = deployment_id
        self.deployment_name = deployment_name
        self.deployment_version = deployment_version
        self.parameters = parameters or {}


deployment_run: contextvars.ContextVar[DeploymentRunSpec | None] = contextvars.ContextVar("deployment_run",
                                                                                        default=None)
