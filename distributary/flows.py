"""`@flow` and the Flow object: parameters validated from type hints, a task runner per flow run, retries,
timeouts, hooks, subflows, and the final state from what the flow returns.

Mirrors `prefect.flows`.
"""
from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Callable, Generator
from functools import update_wrapper
from typing import Any, Generic, TypeVar, overload

from . import settings
from . import states as S
from ._registry import load_dotted
from .context import FlowRunContext, current_tags, deployment_run, flow_run_ctx
from .engine import CALL, async_caller, attempts, core, drive, drive_async, run_hook, sync_caller, transitions
from .engine.spec import FlowSpec
from .errors import FlowRunTimeoutError, ParameterTypeError, UnknownNameError
from .logging import engine_logger, reset_log_prints, set_log_prints
from .runners import TaskRunner, get_runner, runner_names
from .runs import FlowRun, flow_run_name, get_recorder
from .states import State
from .tasks import Binder, _check_hooks, bind_method, check_retry_options, check_timeout, rewrap_method, unwrap_method

R = TypeVar("R")


def _deployments(path: str) -> Any:
    """An object of the deployments app ("module:attr" under `distributary.deployments`). The app is a layer
    above the public API, so Prefect's `flow.serve()`, `to_deployment()`, `deploy()` and `from_source()` name it
    and import it on first use (as the runner registry does), instead of importing upwards."""
    return load_dotted(f"distributary.deployments.{path}", "The deployments app")


class Flow(Generic[R]):
    """A function whose calls become flow runs: observable, retryable, with a task runner for its tasks."""

    _OPTION_NAMES = ("name", "version", "flow_run_name", "retries", "retry_delay_seconds", "task_runner",
                     "description", "timeout_seconds", "validate_parameters", "persist_result", "result_storage",
                     "result_serializer", "cache_result_in_memory", "log_prints", "on_completion", "on_failure",
                     "on_cancellation", "on_crashed", "on_running", "isolation_level")

    def __init__(self, fn: Callable[..., R], name: str | None = None, version: str | None = None,
                 flow_run_name: Any = None, retries: int | None = None, retry_delay_seconds: Any = None,
                 task_runner: Any = None, description: str | None = None, timeout_seconds: float | None = None,
                 validate_parameters: bool = True, persist_result: bool | None = None, result_storage: Any = None,
                 result_serializer: Any = None, cache_result_in_memory: bool = True,
                 log_prints: bool | None = None, on_completion: Any = None, on_failure: Any = None,
                 on_cancellation: Any = None, on_crashed: Any = None, on_running: Any = None,
                 isolation_level: Any = None):
        fn, self._method_kind = unwrap_method(fn)
        if not callable(fn):
            raise TypeError(f"@flow needs a function, got {fn!r}")
        self.fn = fn
        self.isasync = inspect.iscoroutinefunction(fn)
        self.name = name or getattr(fn, "__name__", "flow").replace("_", "-")
        owner = f"Flow {self.name!r}"
        self.version = version
        self.flow_run_name = flow_run_name
        self.description = description or inspect.getdoc(fn)
        self.retries, self._retry_delays = check_retry_options(owner, retries, retry_delay_seconds)
        self.retry_delay_seconds = retry_delay_seconds
        self.timeout_seconds = check_timeout(owner, timeout_seconds)
        if task_runner is not None and not isinstance(task_runner, TaskRunner):
            if isinstance(task_runner, str) and task_runner not in runner_names():
                raise UnknownNameError(f"{owner}: unknown task runner {task_runner!r}; valid names are: "
                                       f"{', '.join(runner_names())}.")
            if not isinstance(task_runner, (str, type)):
                raise TypeError(f"{owner}: task_runner must be a TaskRunner instance or a runner name "
                                f"({', '.join(runner_names())}); got {task_runner!r}.")
        self.task_runner = task_runner
        self.validate_parameters = validate_parameters
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.cache_result_in_memory = cache_result_in_memory
        self.log_prints = log_prints
        self.isolation_level = isolation_level
        self.on_completion = _check_hooks(f"{owner} on_completion", on_completion)
        self.on_failure = _check_hooks(f"{owner} on_failure", on_failure)
        self.on_cancellation = _check_hooks(f"{owner} on_cancellation", on_cancellation)
        self.on_crashed = _check_hooks(f"{owner} on_crashed", on_crashed)
        self.on_running = _check_hooks(f"{owner} on_running", on_running)
        self._binder = Binder(fn)
        self._adapters: dict[str, Any] | None = None
        update_wrapper(self, fn)  # type: ignore[arg-type]
        self.__dict__.pop("_spec", None)  # a spec copied from a wrapped Flow belongs to that flow

    @property
    def spec(self) -> FlowSpec:
        """This flow's options as the engine reads them, frozen; built on first use and again after any
        attribute of the flow changes."""
        spec: FlowSpec | None = self.__dict__.get("_spec")
        if spec is None:
            spec = self.__dict__["_spec"] = FlowSpec(
                owner=self, name=self.name, version=self.version, invoke=self._binder.invoke,
                signature=self._binder.sig, isasync=self.isasync, flow_run_name=self.flow_run_name,
                retries=self.retries, retry_delays=self._retry_delays,
                timeout_seconds=self.timeout_seconds, persist_result=self.persist_result,
                result_storage=self.result_storage, result_serializer=self.result_serializer,
                cache_result_in_memory=self.cache_result_in_memory, log_prints=self.log_prints,
                isolation_level=self.isolation_level, make_runner=self._make_runner, on_running=self.on_running,
                on_completion=self.on_completion, on_failure=self.on_failure,
                on_cancellation=self.on_cancellation, on_crashed=self.on_crashed)
        return spec

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name != "_adapters":
            self.__dict__.pop("_spec", None)  # the spec is rebuilt from the changed flow on next use

    def with_options(self, **changes: Any) -> Flow[R]:
        """A copy of this flow with some options changed, e.g. `flow.with_options(task_runner="dask")`."""
        unknown = set(changes) - set(self._OPTION_NAMES)
        if unknown:
            raise TypeError(f"with_options() got unknown option(s) {sorted(unknown)}; "
                            f"valid: {', '.join(self._OPTION_NAMES)}")
        opts = {k: getattr(self, k) for k in self._OPTION_NAMES}
        opts.update(changes)
        return Flow(rewrap_method(self), **opts)

    # -- parameters -------------------------------------------------------------------------------------------
    def validate(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Validate and coerce parameters from the function's type hints (pydantic, lax mode)."""
        if not self.validate_parameters:
            return parameters
        if self._adapters is None:
            import pydantic

            hints = _type_hints(self.fn)
            adapters = {}
            for name, p in self._binder.sig.parameters.items():
                ann = hints.get(name, p.annotation)
                if ann is inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    continue
                try:
                    adapters[name] = pydantic.TypeAdapter(ann, config=None)
                except Exception:  # an annotation pydantic cannot build a validator for: not validated
                    adapters[name] = pydantic.TypeAdapter(Any)
            self._adapters = adapters
        import pydantic

        out = dict(parameters)
        for name, adapter in self._adapters.items():
            if name not in out:
                continue
            try:
                out[name] = adapter.validate_python(out[name])
            except pydantic.ValidationError as exc:
                detail = "; ".join(e["msg"] for e in exc.errors()[:3])
                raise ParameterTypeError(f"Flow {self.name!r} got an invalid value for parameter {name!r}: "
                                         f"{out[name]!r} ({detail}).") from None
        return out

    # -- calling ----------------------------------------------------------------------------------------------
    def __call__(self, *args: Any, return_state: bool = False, **kwargs: Any) -> Any:
        """Run the flow and return its result (or its final State with `return_state=True`). An async flow
        returns an awaitable."""
        params = self.validate(self._binder.bind(f"Flow {self.name!r}", args, kwargs))
        if self.isasync:
            return _run_async(self, params, return_state)
        out: list[Any] = []
        state = _drive_sync(_flow_steps(self, params, out), self)
        return state if return_state else _flow_result(state, out)

    def to_deployment(self, name: str, *, cron: str | None = None, interval: Any = None, rrule: str | None = None,
                      schedules: Any = None, timezone: str | None = None, anchor_date: Any = None,
                      parameters: dict[str, Any] | None = None, tags: list[str] | None = None,
                      description: str | None = None, version: str | None = None, concurrency_limit: Any = None,
                      paused: bool = False, job_variables: dict[str, Any] | None = None,
                      enforce_parameter_schema: bool = True, work_pool_name: str | None = None,
                      work_queue_name: str | None = None) -> Any:
        """A deployment of this flow (`distributary.deployments.RunnerDeployment`) for `distributary.serve()`.
        With `enforce_parameter_schema` (the default, as in Prefect 3) a run's parameters must validate against
        the flow's signature; `work_pool_name` / `work_queue_name` send its runs to a pool's queue when it is
        registered."""
        return _deployments("definition:RunnerDeployment.from_flow")(
            self, name, cron=cron, interval=interval, rrule=rrule, schedules=schedules, timezone=timezone,
            anchor_date=anchor_date, parameters=parameters, tags=tags, description=description, version=version,
            concurrency_limit=concurrency_limit, paused=paused, job_variables=job_variables,
            enforce_parameter_schema=enforce_parameter_schema, work_pool_name=work_pool_name,
            work_queue_name=work_queue_name)

    def serve(self, name: str | None = None, *, limit: int | None = None, pause_on_shutdown: bool = True,
              print_starting_message: bool = True, **deployment: Any) -> None:
        """Register a deployment of this flow and run its scheduled and triggered runs, each in a subprocess,
        until SIGTERM or Ctrl-C (Prefect's `flow.serve`). Keywords: cron=, interval=, rrule=, schedules=[...],
        timezone=, parameters=, tags=, description=, version=, concurrency_limit=, paused=,
        enforce_parameter_schema=."""
        serve = _deployments("runner:serve")
        serve(self.to_deployment(name or self.name, **deployment), limit=limit, pause_on_shutdown=pause_on_shutdown,
              print_starting_message=print_starting_message)

    @classmethod
    def from_source(cls, source: str, entrypoint: str) -> Flow:
        """The flow at `entrypoint` ("path/file.py:function") in `source` (a folder or a git URL, cloned into
        DISTRIBUTARY_HOME/sources/), ready for `.deploy(...)` or `.serve(...)` (Prefect's `flow.from_source`)."""
        return _deployments("definition:from_source")(source, entrypoint)  # type: ignore[no-any-return]

    def deploy(self, name: str, work_pool_name: str, *, image: Any = None, build: bool = True, push: bool = True,
               work_queue_name: str | None = None, job_variables: dict[str, Any] | None = None,
               **deployment: Any) -> Any:
        """Register a deployment whose runs go to a work pool (Prefect's `flow.deploy`), in its queue
        `work_queue_name` (created if missing; the pool's `default` queue without one); returns its id. Keywords
        as `serve()`: cron=, interval=, rrule=, schedules=, parameters=, tags=, concurrency_limit=,
        enforce_parameter_schema=, ..."""
        return _deployments("definition:deploy")(self, name, work_pool_name, image=image, build=build, push=push,
                                                 work_queue_name=work_queue_name, job_variables=job_variables,
                                                 **deployment)

    def visualize(self, *args: Any, **kwargs: Any) -> None:
        """Not available: Prefect's `visualize()` runs the flow's code with every task call replaced by a
        placeholder to draw the graph, which only matches the real run for flows whose shape does not depend
        on task results. distributary records the real graph instead."""
        raise NotImplementedError(
            f"Flow {self.name!r}: flow.visualize() is not implemented in distributary. Run the flow and look at "
            f"its task runs and their upstream inputs instead (`distributary task-run ls`, or "
            f"get_client().read_task_runs(...)), which show the graph that actually ran.")

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        return bind_method(self, instance, owner)

    def _make_runner(self) -> TaskRunner:
        spec = self.task_runner or settings.get("TASK_RUNNER")
        runner = get_runner(spec)
        return runner.duplicate() if runner is self.task_runner else runner

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Rebuilt from the function and options, as a Task is (its spec refers back to it; the Binder holds a
        # Signature, which pickles poorly).
        return _rebuild_flow, (rewrap_method(self), {k: getattr(self, k) for k in self._OPTION_NAMES})


def _rebuild_flow(fn: Callable[..., Any], options: dict[str, Any]) -> Flow[Any]:
    return Flow(fn, **options)


def _type_hints(fn: Callable) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        return getattr(fn, "__annotations__", {})


# ---------------------------------------------------------------------------------------------------------------
# The flow run
# ---------------------------------------------------------------------------------------------------------------
def _record_runs() -> None:
    """Register the run store's sink when recording is on (once per process; the run store is imported on the
    first flow run, not with distributary)."""
    from .runstore import ensure_sink

    ensure_sink()


def _flow_steps(flow: Flow, params: dict[str, Any], out: list[Any] | None = None) -> Generator[tuple, Any, State]:
    parent = flow_run_ctx.get()
    spec = deployment_run.get() if parent is None else None
    run_id = spec.id if spec is not None else uuid.uuid4()
    name = flow.flow_run_name(**params) if callable(flow.flow_run_name) else (
        flow.flow_run_name.format(**params) if isinstance(flow.flow_run_name, str) else
        spec.name if spec is not None else flow_run_name(run_id))
    # the tags of the `with tags(...)` blocks around the call, and a deployment's own (as Prefect tags a flow run)
    run_tags = current_tags.get() | (spec.tags if spec is not None else frozenset())
    run = FlowRun(run_id, name, flow.name, params, run_tags, S.Pending(),
                  parent.flow_run_id if parent is not None else None, flow.version)
    if spec is not None:  # a deployment's run, created ahead of time: it keeps its id, name, tags and time
        run.expected_start_ts = spec.expected_start_ts
    recorder = get_recorder()
    transitions.ensure_recorder_sink()
    _record_runs()
    transitions.flow_run_created(run)
    return (yield from _flow_attempts(flow, params, run, parent, recorder, out))


def _flow_attempts(flow: Flow, params: dict[str, Any], run: FlowRun, parent: Any, recorder: Any,
                   out: list[Any] | None) -> Generator[tuple, Any, State]:
    log = engine_logger("flow_runs")
    extra = {"run_name": run.name}
    log.info("Beginning %sflow run %r for flow %r", "sub" if parent else "", run.name, flow.name, extra=extra)
    run.start_ts = time.time()
    log_prints = flow.log_prints if flow.log_prints is not None else (parent.log_prints if parent else False)
    for hook in flow.on_running:
        run_hook(hook, flow, run, S.Running())
    spec = flow.spec

    def attempt(running: State) -> Generator[tuple, Any, tuple[State, bool]]:
        try:
            runner = spec.make_runner()
        except Exception as exc:  # an unknown or broken runner ends the run Failed (not retried), never Running
            return S.Failed(message=f"Flow run {run.name!r} could not make its task runner: "
                                    f"{type(exc).__name__}: {exc}", data=exc), False
        ctx = FlowRunContext(spec, run, runner, params, recorder, log_prints, settings.snapshot())
        token = flow_run_ctx.set(ctx)
        lp_token = set_log_prints(log_prints)
        state = None
        try:
            with runner:
                try:
                    if out is not None:
                        out.clear()
                    if flow.timeout_seconds:
                        ctx.deadline = time.monotonic() + flow.timeout_seconds
                    value = yield (CALL, params)
                    if ctx.timed_out():  # it caught the timeout and returned after the deadline
                        raise ctx.timed_out_error()
                    state, returned = core.flow_state_from_return(value)
                    if out is not None and not isinstance(returned, State):
                        out.append(returned)
                except (KeyboardInterrupt, SystemExit) as exc:
                    state = S.Crashed(message=f"Flow run {run.name!r} was interrupted by {type(exc).__name__}.",
                                      data=exc)
                    _end(flow, run, state, log)
                    raise
                except FlowRunTimeoutError as exc:
                    state = S.TimedOut(message=str(exc), data=exc)
                    runner.cancel_all(f"flow run {run.name!r} timed out")  # shutdown must not wait for them
                except BaseException as exc:
                    state = S.Failed(message=f"Flow run encountered an exception. {type(exc).__name__}: {exc}",
                                     data=exc)
        except Exception as exc:  # the runner failed to start (or to shut down before a state was reached)
            if state is None:
                state = S.Failed(message=f"Flow run {run.name!r}: its task runner {runner!r} failed: "
                                         f"{type(exc).__name__}: {exc}", data=exc)
            else:
                log.error("The task runner %r failed to shut down: %r", runner, exc, extra=extra)
        finally:
            reset_log_prints(lp_token)
            flow_run_ctx.reset(token)
        return state, True

    def retrying(state: State, delay: float) -> None:
        log.warning("Flow run %r failed (%s); retrying in %.3gs", run.name, state.message, delay, extra=extra)

    state = yield from attempts(run, spec.retries, spec.retry_delays, None, attempt, on_retry=retrying)
    return _end(flow, run, state, log)


def _end(flow: Flow, run: FlowRun, state: State, log: Any) -> State:
    run.end_ts = time.time()
    transitions.finish(run, state)
    level = 20 if state.is_completed() else 40
    log.log(level, "Finished in state %r", state, extra={"run_name": run.name})
    hooks = (flow.on_completion if state.is_completed() else flow.on_failure if state.is_failed() else
             flow.on_crashed if state.is_crashed() else flow.on_cancellation if state.is_cancelled() else ())
    for hook in hooks:
        run_hook(hook, flow, run, state)
    return state


def _drive_sync(gen: Generator[tuple, Any, State], flow: Flow) -> State:
    top = flow_run_ctx.get() is None
    try:
        return drive(gen, sync_caller(flow._binder.invoke, flow.timeout_seconds, flow, FlowRunTimeoutError))
    finally:
        if top:
            transitions.flush()  # a top-level run ends with its events handed to every sink


async def _run_async(flow: Flow, params: dict[str, Any], return_state: bool) -> Any:
    caller = async_caller(flow._binder.invoke, flow.timeout_seconds, flow, FlowRunTimeoutError)
    out: list[Any] = []
    top = flow_run_ctx.get() is None
    try:
        state = await drive_async(_flow_steps(flow, params, out), caller)
    finally:
        if top:  # the sinks may wait for their writers: off the event loop
            await asyncio.to_thread(transitions.flush)
    return state if return_state else _flow_result(state, out)


def _flow_result(state: State, out: list[Any]) -> Any:
    """What calling a flow returns, as in Prefect 3: what the function returned, with futures replaced by their
    final states, unless that was a State (then the state's result, which raises for a failed one); if it
    raised, its exception."""
    if out:
        return out[0]
    return state.result()


@overload
def flow(__fn: Callable[..., R]) -> Flow[R]: ...


@overload
def flow(**options: Any) -> Callable[[Callable[..., R]], Flow[R]]: ...


def flow(__fn: Callable[..., R] | None = None, **options: Any) -> Any:
    """Decorate a function as a flow, bare (`@flow`) or with options (`@flow(task_runner="processes")`)."""
    if __fn is not None:
        return Flow(__fn, **options)
    return lambda fn: Flow(fn, **options)


flow.from_source = Flow.from_source  # type: ignore[attr-defined]  # Prefect's `flow.from_source(...)`

__all__ = ["Flow", "flow"]
