"""From measurements to advice: fit each runner's wall time as `a + b*N` (a = fixed cost per flow run, b = cost
per task) by robust least squares, then say which runner pays off where.

The cost model of one flow run with N tasks that each do `t` seconds of CPU-bound Python work:

    wall(N, t) = startup + a + N * (b + t / p)

`startup` is the cluster's start-up (counted unless `include_startup=False`, e.g. for a long-lived cluster),
`p` the tasks that run at once (threads: 1, because of the GIL, unless `gil_bound=False`; processes, Dask
workers and Ray CPUs: their number). The fit is on relative residuals (sizes span decades), with Huber
weights so a single disturbed repeat (other programs on the machine) does not move it.

    advice = advise("bench.json", n=100_000, task_seconds=0.002)
    print(advice.explanation)
    my_flow.with_options(task_runner=advice.runner)
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from .measure import Measurement


@dataclass(frozen=True)
class LinearFit:
    """wall ≈ a + b*N; `rel_rmse` is the typical relative error of the fit over the points used."""

    a: float
    b: float
    points: int
    rel_rmse: float

    def predict(self, n: float) -> float:
        return self.a + self.b * n


def fit_linear(ns: Sequence[float], walls: Sequence[float], iterations: int = 50, huber_k: float = 1.345
               ) -> LinearFit:
    """Robust least squares of `walls ≈ a + b*ns` with a, b >= 0 (IRLS on relative residuals, Huber weights).

    >>> f = fit_linear([10, 100, 1000], [0.2 + 1e-3 * n for n in (10, 100, 1000)])
    >>> round(f.a, 6), round(f.b, 9)
    (0.2, 0.001)
    """
    pts = [(float(n), float(w)) for n, w in zip(ns, walls) if w > 0 and n > 0]
    if not pts:
        raise ConfigurationError("Nothing to fit: no successful measurements.")
    if len({n for n, _ in pts}) == 1:  # one size: all of it is per-task cost (nothing tells a from b)
        n0 = pts[0][0]
        b = _median([w for _, w in pts]) / n0
        return LinearFit(0.0, b, len(pts), _rel_rmse(pts, 0.0, b))
    robust = [1.0] * len(pts)
    a = b = 0.0
    for _ in range(iterations):
        weights = [r / (w * w) for r, (_, w) in zip(robust, pts)]  # relative residuals
        a_new, b_new = _weighted_fit(pts, weights)
        residuals = [(a_new + b_new * n - w) / w for n, w in pts]
        scale = 1.4826 * _median([abs(r) for r in residuals]) or 1e-12
        robust = [1.0 if abs(r) <= huber_k * scale else huber_k * scale / abs(r) for r in residuals]
        converged = abs(a_new - a) <= 1e-12 + 1e-9 * abs(a) and abs(b_new - b) <= 1e-15 + 1e-9 * abs(b)
        a, b = a_new, b_new
        if converged:
            break
    return LinearFit(a, b, len(pts), _rel_rmse(pts, a, b))


def _weighted_fit(pts: list[tuple[float, float]], weights: list[float]) -> tuple[float, float]:
    sw = sum(weights)
    sx = sum(w * n for w, (n, _) in zip(weights, pts))
    sy = sum(w * y for w, (_, y) in zip(weights, pts))
    sxx = sum(w * n * n for w, (n, _) in zip(weights, pts))
    sxy = sum(w * n * y for w, (n, y) in zip(weights, pts))
    det = sw * sxx - sx * sx
    a, b = ((sxx * sy - sx * sxy) / det, (sw * sxy - sx * sy) / det) if det > 0 else (0.0, sy / sx)
    if a < 0:  # constrained: no negative fixed cost
        a, b = 0.0, sxy / sxx
    if b < 0:
        a, b = sy / sw, 0.0
    return a, b


def _median(values: list[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _rel_rmse(pts: list[tuple[float, float]], a: float, b: float) -> float:
    return math.sqrt(sum(((a + b * n - w) / w) ** 2 for n, w in pts) / len(pts))


# ---------------------------------------------------------------------------------------------------------------
@dataclass
class RunnerCost:
    """The fitted costs of one runner on one scenario, and where it pays off."""

    runner: str
    kind: str
    startup_s: float
    fixed_s: float
    per_task_s: float
    parallelism: int
    fit: LinearFit
    options: dict[str, Any] = field(default_factory=dict)
    predicted_s: float = 0.0
    pays_off_above_n: float | None = None
    pays_off_below_n: float | None = None
    pays_off_above_task_s: float | None = None

    def predict(self, n: float, task_seconds: float = 0.0, include_startup: bool = True) -> float:
        return ((self.startup_s if include_startup else 0.0) + self.fixed_s
                + n * (self.per_task_s + task_seconds / self.parallelism))


@dataclass
class Advice:
    """Which runner to use for `n` tasks of `task_seconds` each. `runner` is a runner name for
    `flow.with_options(task_runner=advice.runner)`; `make_runner()` also applies the options benchmarked (e.g. a
    Dask scheduler address)."""

    runner: str
    runner_label: str
    n: int
    task_seconds: float
    scenario: str
    explanation: str
    costs: dict[str, RunnerCost]
    include_startup: bool = True

    def make_runner(self) -> Any:
        """A task runner instance for the recommended runner, with the options given to the benchmark."""
        from ..runners import load_runner_class

        cost = self.costs[self.runner_label]
        opts = dict(cost.options)
        cls: Any = load_runner_class(cost.kind)  # the concrete runner's own options
        if cost.kind in ("threads", "processes"):
            return cls(**opts)
        address = opts.pop("address", None)
        if cost.kind == "dask":
            return cls(address=address, cluster_kwargs=opts or None) if address is None else cls(address=address)
        return cls(address=address, init_kwargs=opts or None)

    def __str__(self) -> str:
        return self.explanation


def _measurements(source: Any) -> list[Measurement]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ConfigurationError(f"Bench result file {str(path)!r} does not exist.")
        source = json.loads(path.read_text())
    if isinstance(source, dict):
        source = source.get("measurements", [])
    if hasattr(source, "measurements"):
        source = source.measurements
    out = []
    for m in source:
        out.append(m if isinstance(m, Measurement) else Measurement.from_dict(m))
    return out


def fit_runners(measurements: Iterable[Measurement], scenario: str, gil_bound: bool = True
                ) -> dict[str, RunnerCost]:
    """One `RunnerCost` per distributary runner measured on `scenario` (raw and Prefect rows are comparators)."""
    by_runner: dict[str, list[Measurement]] = {}
    for m in measurements:
        if m.scenario == scenario and m.impl == "distributary" and m.ok:
            by_runner.setdefault(m.runner, []).append(m)
    costs = {}
    for runner, ms in by_runner.items():
        ns = [m.n for m in ms for _ in m.walls]
        walls = [w for m in ms for w in m.walls]
        fit = fit_linear(ns, walls)
        first = ms[0]
        parallel = max(1, first.parallelism or 1)
        if first.kind == "threads" and not gil_bound:
            parallel = int(first.options.get("max_workers") or _default_threads())
        costs[runner] = RunnerCost(runner, first.kind, first.startup_s or 0.0, fit.a, fit.b, parallel, fit,
                                   dict(first.options))
    return costs


def _default_threads() -> int:
    import os

    return min(32, (os.cpu_count() or 1) + 4)


def advise(measurements: Any, n: int, task_seconds: float = 0.0, *, scenario: str | None = None,
           include_startup: bool = True, gil_bound: bool = True) -> Advice:
    """The runner to use for a flow run of `n` tasks taking `task_seconds` each, from bench measurements (a
    JSON file path, a `SweepResult`, or a list of `Measurement`s or their dicts).

    `scenario` defaults to the user flow of the measurements if there is one, else "fanout".

    >>> advice = advise("bench.json", n=10_000)                 # doctest: +SKIP
    >>> advice.runner, advice.costs["threads"].per_task_s        # doctest: +SKIP
    ('threads', 4.1e-05)
    """
    if n < 1:
        raise ConfigurationError(f"advise(): n must be >= 1, got {n}.")
    if task_seconds < 0:
        raise ConfigurationError(f"advise(): task_seconds must be >= 0, got {task_seconds}.")
    ms = _measurements(measurements)
    scenarios = list(dict.fromkeys(m.scenario for m in ms if m.impl == "distributary" and m.ok))
    if scenario is None:
        builtin = {"fanout", "fanout_1mb", "chain", "map_reduce", "cache_local", "cache_s3", "arrow_local",
                   "arrow_s3"}
        users = [s for s in scenarios if s not in builtin]
        scenario = users[0] if users else "fanout"
    costs = fit_runners(ms, scenario, gil_bound)
    if not costs:
        raise ConfigurationError(f"advise(): no successful distributary measurements of scenario {scenario!r}; "
                                 f"scenarios measured: {', '.join(scenarios) or 'none'}.")
    for c in costs.values():
        c.predicted_s = c.predict(n, task_seconds, include_startup)
    best = min(costs.values(), key=lambda c: c.predicted_s)
    _crossovers(costs, n, task_seconds, include_startup)
    return Advice(best.kind, best.runner, n, task_seconds, scenario,
                  _explain(costs, best, n, task_seconds, scenario, include_startup, gil_bound), costs,
                  include_startup)


def _crossovers(costs: dict[str, RunnerCost], n: int, t: float, include_startup: bool) -> None:
    """Where each runner beats the one cheapest for a single task (usually threads): above which N at task
    duration t, and above which task duration at N = n."""
    base = min(costs.values(), key=lambda c: c.predict(1, t, include_startup))
    for c in costs.values():
        if c is base:
            continue
        fixed_gap = c.predict(0, 0, include_startup) - base.predict(0, 0, include_startup)
        slope_gap = (base.per_task_s + t / base.parallelism) - (c.per_task_s + t / c.parallelism)
        if slope_gap > 0:
            c.pays_off_above_n = max(0.0, fixed_gap / slope_gap)
        inv_gap = 1 / base.parallelism - 1 / c.parallelism
        if inv_gap > 0:
            needed = (fixed_gap + n * (c.per_task_s - base.per_task_s)) / (n * inv_gap)
            c.pays_off_above_task_s = max(0.0, needed)
    others = [c.pays_off_above_n for c in costs.values() if c is not base and c.pays_off_above_n is not None]
    base.pays_off_below_n = min(others) if others else None


def _fmt_n(n: float) -> str:
    return f"{n:,.0f}" if n < 1e7 else f"{n:.2g}"


def _fmt_s(s: float) -> str:
    """Seconds in the unit that reads best: 1.5 s, 41 ms, 40 us ("-" for zero)."""
    if s == 0:
        return "-"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if float(f"{s / scale:.3g}") >= 1:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e6:.2g} us"


def _explain(costs: dict[str, RunnerCost], best: RunnerCost, n: int, t: float, scenario: str,
             include_startup: bool, gil_bound: bool) -> str:
    lines = [f"For {_fmt_n(n)} tasks of {_fmt_s(t) if t else 'the benchmarked work'} each "
             f"(scenario {scenario}{', cluster start-up included' if include_startup else ''}), use "
             f"{best.runner}: about {_fmt_s(best.predicted_s)} per flow run."]
    for c in sorted(costs.values(), key=lambda c: c.predicted_s):
        where = []
        if c.pays_off_below_n is not None:
            where.append(f"cheapest below N ≈ {_fmt_n(c.pays_off_below_n)}")
        elif c.pays_off_above_n is None and c.pays_off_above_task_s is None and c is not best:
            where.append("never cheapest for this workload")
        if c.pays_off_above_n is not None:
            where.append(f"pays off above N ≈ {_fmt_n(c.pays_off_above_n)}")
        if c.pays_off_above_task_s is not None:
            where.append(f"at N = {_fmt_n(n)} pays off above {_fmt_s(c.pays_off_above_task_s)} per task")
        lines.append(f"  {c.runner:<28} start-up {_fmt_s(c.startup_s):>9}, fixed {_fmt_s(c.fixed_s):>9}, "
                     f"per task {_fmt_s(c.per_task_s):>9}, parallel {c.parallelism}: predicted "
                     f"{_fmt_s(c.predicted_s)}" + (f"; {'; '.join(where)}" if where else ""))
    if gil_bound and any(c.kind == "threads" for c in costs.values()):
        lines.append("  (task work is taken as CPU-bound Python: threads run one at a time; pass gil_bound=False "
                     "for I/O-bound or GIL-releasing work.)")
    return "\n".join(lines)


__all__ = ["fit_linear", "LinearFit", "RunnerCost", "Advice", "advise", "fit_runners"]
