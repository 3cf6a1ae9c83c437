"""`run_sweep`: every scenario x runner x N, distributary and the raw baseline interleaved repeat by repeat (so
load from other programs hits both alike), cluster start-up timed once per runner, driver memory in one extra
traced run per point. Also loads a user's flow from `file.py:flow_name`.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import inspect
import json
import shutil
import sys
import tempfile
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, DistributaryError
from .backends import Backend, MotoServer, make_backend
from .measure import Measurement, Progress, load_average, machine_info, peak_python_bytes, timed
from .scenarios import SCENARIOS, SWEEP_SCENARIOS, Context, Scenario, env_defaults, user_flow_scenario
from .spec import RunnerSpec, parse_runners

SCHEMA = "distributary-bench/1"
DEFAULT_SIZES = [10**2, 10**3, 10**4, 10**5, 10**6]
SMOKE_SIZES = [10, 40]


@dataclass
class SweepResult:
    """Everything a sweep measured, with the machine it ran on. `to_dict()` is the JSON file's content."""

    measurements: list[Measurement]
    machine: dict[str, Any]
    backends: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    started: str = ""
    finished: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "started": self.started, "finished": self.finished, "machine": self.machine,
                "load": self.load, "config": self.config, "backends": self.backends, "notes": self.notes,
                "measurements": [m.to_dict() for m in self.measurements]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepResult:
        if data.get("schema") != SCHEMA:
            raise ConfigurationError(f"Not a distributary bench result (schema {data.get('schema')!r}, expected "
                                     f"{SCHEMA!r}).")
        return cls([Measurement.from_dict(m) for m in data["measurements"]], data.get("machine", {}),
                   data.get("backends", []), data.get("config", {}), data.get("load", {}), data.get("started", ""),
                   data.get("finished", ""), data.get("notes", []))

    @classmethod
    def read(cls, path: str | Path) -> SweepResult:
        path = Path(path)
        if not path.is_file():
            raise ConfigurationError(f"Bench result file {str(path)!r} does not exist.")
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigurationError(f"Bench result file {str(path)!r} is not valid JSON ({exc}); give the "
                                     f"results.json a sweep wrote.") from exc
        return cls.from_dict(data)

    @classmethod
    def merge(cls, parts: list[SweepResult]) -> SweepResult:
        """One result from sweeps run separately (e.g. one per runner, so a long sweep can be split or resumed).
        A point measured in several parts keeps the last part's figures."""
        if not parts:
            raise ConfigurationError("Nothing to merge: give at least one results.json.")
        if len(parts) == 1:
            return parts[0]
        points: dict[tuple[str, str, str, int], Measurement] = {}
        for part in parts:
            for m in part.measurements:
                points[(m.scenario, m.runner, m.impl, m.n)] = m
        first = parts[0]
        notes = [n for p in parts for n in p.notes]
        cpus = {p.machine.get("cpus") for p in parts}
        if len(cpus) > 1:
            notes.append(f"merged from sweeps on machines with different CPU counts ({sorted(map(str, cpus))})")
        samples = [x for p in parts for x in (p.load or {}).get("samples_1min", [])]
        point_loads = [m.load_1min for m in points.values() if m.load_1min is not None]
        every = samples + point_loads
        load = {"samples_1min": samples, "max_1min": max(every, default=None),
                "mean_1min": sum(every) / len(every) if every else None, "cpus": first.load.get("cpus")}
        config = dict(first.config)
        config["commands"] = [p.config.get("command") or [] for p in parts]
        config["scenarios"] = list(dict.fromkeys(s for p in parts for s in p.config.get("scenarios", [])))
        config["runners"] = [r for p in parts for r in p.config.get("runners", [])]
        config["with_prefect"] = any(p.config.get("with_prefect") for p in parts)
        return cls(list(points.values()), first.machine, [b for p in parts for b in p.backends], config, load,
                   min(p.started for p in parts), max(p.finished for p in parts), notes)

    def scenarios(self) -> list[str]:
        return list(dict.fromkeys(m.scenario for m in self.measurements))

    def find(self, scenario: str, runner: str, impl: str, n: int) -> Measurement | None:
        for m in self.measurements:
            if (m.scenario, m.runner, m.impl, m.n) == (scenario, runner, impl, n):
                return m
        return None


# ---------------------------------------------------------------------------------------------------------------
# The user's flow
# ---------------------------------------------------------------------------------------------------------------
def load_flow(target: str) -> tuple[str, Any]:
    """(`name`, Flow) from "path/to/file.py:flow_name". The module is imported under a private name and its
    functions are pickled by value, so process, Dask and Ray workers need not import the file."""
    from ..flows import Flow

    path_text, sep, name = target.rpartition(":")
    if not sep or not path_text or not name:
        raise ConfigurationError(f"Give the flow as FILE.py:FLOW_NAME (e.g. pipeline.py:etl), not {target!r}.")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise ConfigurationError(f"Flow file {path_text!r} does not exist (looked at {path.resolve()}).")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    module_name = f"_distributary_bench_{path.stem}_{digest}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ConfigurationError(f"Flow file {path_text!r} cannot be imported as Python.")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[module_name]
            raise ConfigurationError(f"Importing {path_text!r} failed: {type(exc).__name__}: {exc}") from exc
        import cloudpickle

        cloudpickle.register_pickle_by_value(module)
    flows = sorted(k for k, v in vars(module).items() if isinstance(v, Flow))
    obj = getattr(module, name, None)
    if obj is None:
        raise ConfigurationError(f"{path_text!r} has no flow named {name!r}; flows defined there: "
                                 f"{', '.join(flows) or 'none'}.")
    if not isinstance(obj, Flow):
        raise ConfigurationError(f"{name!r} in {path_text!r} is a {type(obj).__name__}, not a @flow; flows defined "
                                 f"there: {', '.join(flows) or 'none'}.")
    return f"{path.name}:{name}", obj


def _check_params(flow_obj: Any, size_param: str, params: dict[str, Any]) -> None:
    sig = inspect.signature(flow_obj.fn)
    names = list(sig.parameters)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    for key in [size_param, *params]:
        if key not in names and not var_kw:
            which = "--size-param" if key == size_param else "--param"
            raise ConfigurationError(f"Flow {flow_obj.name!r} has no parameter {key!r} ({which}); its parameters: "
                                     f"{', '.join(names) or 'none'}.")


# ---------------------------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------------------------
def run_sweep(runners: str | Iterable[RunnerSpec] = "threads,processes", scenarios: Iterable[str] | None = None,
              sizes: Iterable[int] | None = None, repeat: int = 3, *, flow: Any = None, size_param: str = "n",
              params: dict[str, Any] | None = None, smoke: bool = False, memory: bool = True,
              memory_max_n: int = 10**5, caps: bool = True, max_seconds: float | None = 300.0,
              with_prefect: bool = False, prefect_max_n: int = 10**3, arrow_mib: int | None = None,
              repeat_long: int = 1, long_seconds: float = 60.0, prefect_repeat: int = 1,
              progress: bool = True, workdir: str | Path | None = None) -> SweepResult:
    """Run the scaling sweep and return every measurement.

    `flow` (a Flow, or "file.py:flow_name") runs the user's flow with `size_param` = each size (and fixed
    `params`) instead of the built-in scenarios. `caps` keeps each built-in scenario under its largest N per
    runner (see `scenarios.py`); `max_seconds` skips a size whose run would take longer, extrapolated from the
    previous size; a run expected to take over `long_seconds` is repeated only `repeat_long` times (and not traced
    for memory). `smoke` uses tiny sizes and a 1 MiB Arrow table. Driver memory is traced for N <= `memory_max_n`.
    `with_prefect` adds Prefect 3's figures (see `prefect_compare.py`) for N <= `prefect_max_n`.

    >>> result = run_sweep("threads", ["fanout"], [100, 1000], repeat=1)   # doctest: +SKIP
    """
    env_defaults()
    specs = parse_runners(runners) if isinstance(runners, str) else list(runners)
    if repeat < 1:
        raise ConfigurationError(f"repeat must be >= 1, got {repeat}.")
    sizes = sorted(set(sizes or (SMOKE_SIZES if smoke else DEFAULT_SIZES)))
    params = dict(params or {})
    if flow is not None:
        name, flow_obj = load_flow(flow) if isinstance(flow, str) else (flow.name, flow)
        _check_params(flow_obj, size_param, params)
        chosen = [user_flow_scenario(name, flow_obj, size_param, params)]
    else:
        names = list(scenarios or SWEEP_SCENARIOS + ("arrow_local", "arrow_s3"))
        unknown = [s for s in names if s not in SCENARIOS]
        if unknown:
            raise ConfigurationError(f"Unknown scenario(s) {', '.join(unknown)}; valid: {', '.join(SCENARIOS)}.")
        chosen = [SCENARIOS[s] for s in names]
        _preload_forkserver(chosen)
    tmp = Path(tempfile.mkdtemp(prefix="distributary-bench-", dir=workdir))
    ctx = Context(tmp, arrow_mib=arrow_mib or (1 if smoke else 100))
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    loads = [load_average()]
    out: list[Measurement] = []
    notes: list[str] = []
    backends_info: list[dict[str, Any]] = []
    total = sum(len(sc.sizes(ctx, s.kind, sizes, caps)) * len(sc.impls(s.kind)) * (repeat + (1 if memory else 0))
                for s in specs for sc in chosen)
    bar = Progress(total, enabled=progress)
    moto = None
    try:
        if any(sc.needs_s3 for sc in chosen):
            moto, note = _start_s3(ctx)
            if note:
                notes.append(note)
                bar.message(note)
        for spec in specs:
            backend = make_backend(spec)
            bar.update(f"starting {spec.label}")
            try:
                backend.start()
            except (DistributaryError, OSError, ImportError, RuntimeError) as exc:
                msg = f"{spec.label}: could not start: {exc}"
                notes.append(msg)
                bar.message(msg)
                for sc in chosen:
                    for n in sc.sizes(ctx, spec.kind, sizes, caps):
                        out.append(_point(sc, backend, "distributary", n, error=msg))
                        bar.step(spec.label, count=len(sc.impls(spec.kind)) * (repeat + (1 if memory else 0)))
                backends_info.append(backend.info())
                continue
            if backend.startup_s is not None:
                bar.message(f"{spec.label}: cluster start-up {backend.startup_s:.2f} s")
            try:
                for sc in chosen:
                    if sc.needs_s3 and ctx.s3_options is None:
                        for n in sc.sizes(ctx, spec.kind, sizes, caps):
                            out.append(_point(sc, backend, "distributary", n, error="S3 server not available"))
                            bar.step(sc.name, count=len(sc.impls(spec.kind)) * (repeat + (1 if memory else 0)))
                        continue
                    out += _run_scenario(sc, backend, ctx, sc.sizes(ctx, spec.kind, sizes, caps), repeat, memory,
                                         memory_max_n, max_seconds, bar, min(repeat_long, repeat), long_seconds)
                loads.append(load_average())
            finally:
                backends_info.append(backend.info())
                backend.close()
            if with_prefect:  # after closing ours: Prefect starts a cluster of the same shape in its own venv
                from .prefect_compare import run_prefect

                out += run_prefect(backend, chosen, ctx, sizes, prefect_repeat, caps=caps, max_n=prefect_max_n,
                                   max_seconds=max_seconds, progress=bar)
    finally:
        bar.close()
        if moto is not None:
            moto.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    loads.append(load_average())
    finished = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    config = {"runners": [s.to_dict() for s in specs], "scenarios": [sc.name for sc in chosen], "sizes": sizes,
              "repeat": repeat, "smoke": smoke, "memory": memory, "memory_max_n": memory_max_n, "caps": caps,
              "max_seconds": max_seconds, "repeat_long": repeat_long, "long_seconds": long_seconds,
              "with_prefect": with_prefect, "prefect_max_n": prefect_max_n, "prefect_repeat": prefect_repeat,
              "arrow_mib": ctx.arrow_mib,
              "user_flow": chosen[0].name if flow is not None else None, "size_param": size_param,
              "params": params, "command": sys.argv}
    samples = [x[0] for x in loads if x is not None] + [m.load_1min for m in out if m.load_1min is not None]
    load = {"samples_1min": [x[0] for x in loads if x is not None],
            "max_1min": max(samples, default=None), "mean_1min": sum(samples) / len(samples) if samples else None,
            "cpus": machine_info().get("cpus")}
    return SweepResult(out, machine_info(), backends_info, config, load, started, finished, notes)


def _preload_forkserver(chosen: list[Scenario]) -> None:
    """Process pools (raw and distributary alike) start per run; their workers fork from a forkserver that has
    imported the scenario modules, so a run is not billed ~1 s of importing s3fs or pyarrow per worker.
    Takes effect only if this process has not started its forkserver yet."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    modules = ["distributary.bench.scenarios"]
    if any(sc.needs_s3 for sc in chosen):
        modules.append("s3fs")
    if any(sc.name.startswith("arrow") for sc in chosen):
        modules.append("pyarrow")
    multiprocessing.set_forkserver_preload([m for m in modules if importlib.util.find_spec(m) is not None])


def _start_s3(ctx: Context) -> tuple[MotoServer | None, str]:
    try:
        moto = MotoServer()
    except (DistributaryError, OSError, ImportError) as exc:
        return None, f"S3 scenarios skipped: {exc}"
    import s3fs

    bucket = f"distributary-bench-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem(skip_instance_cache=True, **moto.storage_options).mkdir(bucket)
    ctx.s3_options, ctx.bucket = moto.storage_options, bucket
    return moto, ""


def _point(sc: Scenario, backend: Backend, impl: str, n: int, error: str | None = None, note: str = ""
           ) -> Measurement:
    load = load_average()
    return Measurement(sc.name, backend.spec.label, backend.spec.kind, impl, n, startup_s=backend.startup_s,
                       parallelism=backend.parallelism, options=dict(backend.spec.options), error=error, note=note,
                       load_1min=load[0] if load else None)


def _describe(exc: BaseException) -> str:
    tail = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return tail[:500]


def _run_scenario(sc: Scenario, backend: Backend, ctx: Context, sizes: list[int], repeat: int, memory: bool,
                  memory_max_n: int, max_seconds: float | None, bar: Progress, repeat_long: int = 1,
                  long_seconds: float = 60.0) -> list[Measurement]:
    label = backend.spec.label
    impls = sc.impls(backend.spec.kind)
    results: list[Measurement] = []
    per_point = len(impls) * (repeat + (1 if memory else 0))
    last: dict[str, tuple[int, float]] = {}
    warmed = False
    for n in sizes:
        points = {impl: _point(sc, backend, impl, n) for impl, _ in impls}
        results += points.values()
        skip = _predicted_too_slow(last, n, max_seconds)
        if skip:
            for m in points.values():
                m.error = skip
            bar.step(f"{sc.name} {label} N={n} skipped", count=per_point)
            continue
        # A run expected to take over `long_seconds` is repeated `repeat_long` times and not traced for memory
        # (tracemalloc slows it several times; its resident-set growth is still recorded).
        expected = {impl: _expected_wall(last.get(impl), n) for impl, _ in impls}
        reps = {impl: repeat_long if expected[impl] > long_seconds else repeat for impl, _ in impls}
        runs: dict[str, Callable[[], Any]] = {}
        for impl, make in impls:
            try:
                if not warmed:  # first use of this scenario here: worker imports, pools, pickling caches
                    bar.update(f"{sc.name} {label} {impl} warm-up")
                    _call(make(ctx, backend, min(n, 10)))
                runs[impl] = make(ctx, backend, n)
            except Exception as exc:  # cannot run here (missing package, store error...): recorded, sweep goes on
                points[impl].error = _describe(exc)
        warmed = True
        for r in range(repeat):
            for impl, _ in impls:
                m = points[impl]
                bar.step(f"{sc.name} {label} {impl} N={n} run {r + 1}/{reps[impl]}")
                if m.error is None and r < reps[impl]:
                    try:
                        wall, rss = timed(runs[impl])
                        m.walls.append(wall)
                        if rss is not None:
                            m.rss_peaks.append(rss)
                    except Exception as exc:
                        m.error = _describe(exc)
                    finally:
                        _cleanup(runs[impl])
        if memory:
            for impl, _ in impls:
                m = points[impl]
                bar.step(f"{sc.name} {label} {impl} N={n} memory")
                if m.error is None and n <= memory_max_n and expected[impl] <= long_seconds:
                    try:
                        m.peak_bytes = peak_python_bytes(runs[impl])
                    except Exception as exc:
                        m.note = f"memory run failed: {_describe(exc)}"
                    finally:
                        _cleanup(runs[impl])
                elif m.error is None and n <= memory_max_n:
                    m.note = (f"not traced for memory: a run takes about {expected[impl]:.0f} s (over "
                              f"{long_seconds:g} s); see the resident-set growth")
        for impl, m in points.items():
            if m.ok:
                last[impl] = (n, m.wall)
    return results


def _expected_wall(last: tuple[int, float] | None, n: int) -> float:
    """A run's wall time at size n, extrapolated linearly from the previous size (0 when unknown)."""
    return 0.0 if last is None else last[1] * n / last[0]


def _call(fn: Callable[[], Any]) -> None:
    try:
        fn()
    finally:
        _cleanup(fn)


def _cleanup(fn: Callable[[], Any]) -> None:
    cleanup = getattr(fn, "cleanup", None)
    if cleanup is not None:
        cleanup()


def _predicted_too_slow(last: dict[str, tuple[int, float]], n: int, max_seconds: float | None) -> str:
    if max_seconds is None:
        return ""
    for impl, (prev_n, wall) in last.items():
        predicted = wall * n / prev_n
        if predicted > max_seconds:
            return (f"skipped: {impl} would take about {predicted:.0f} s at N={n} (from {wall:.1f} s at "
                    f"N={prev_n}), over --max-seconds {max_seconds:g}")
    return ""


__all__ = ["run_sweep", "SweepResult", "load_flow", "DEFAULT_SIZES", "SMOKE_SIZES", "SCHEMA"]
