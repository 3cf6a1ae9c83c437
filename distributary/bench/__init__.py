"""`distributary bench`: scaling benchmarks across task runners, their report, and advice on which runner to use.

    from distributary.bench import run_sweep, advise
    result = run_sweep("threads,processes", sizes=[100, 1000, 10000], repeat=3)
    advice = advise(result, n=50_000)                    # or advise("bench.json", n=50_000, task_seconds=0.01)
    my_flow.with_options(task_runner=advice.runner)

Names are imported on first use, so `import distributary.bench` stays light (no matplotlib, psutil, dask, ray).
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "advise": ".fit", "Advice": ".fit", "RunnerCost": ".fit", "LinearFit": ".fit", "fit_linear": ".fit",
    "run_sweep": ".sweep", "SweepResult": ".sweep", "load_flow": ".sweep",
    "Measurement": ".measure", "RunnerSpec": ".spec", "parse_runners": ".spec",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'distributary.bench' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


__all__ = sorted(_EXPORTS)
