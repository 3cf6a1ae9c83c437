"""Measuring helpers shared by the benchmarks: wall time over repeats (median, min, max), driver peak memory
(tracemalloc, in a separate run so tracing does not slow the timed runs), tables and JSON output."""
from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Measurement:
    name: str
    n: int
    walls: list[float] = field(default_factory=list)
    peak_bytes: int | None = None

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def per_task_us(self) -> float:
        return self.wall / self.n * 1e6

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n, "wall_median_s": self.wall, "wall_min_s": min(self.walls),
                "wall_max_s": max(self.walls), "per_task_us": self.per_task_us, "peak_bytes": self.peak_bytes,
                "walls": self.walls}


def timed(fn: Callable[[], Any]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def peak_memory(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated by Python in this process while `fn` runs (results included)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(name: str, n: int, fn: Callable[[], Any], repeat: int = 3, memory: bool = True) -> Measurement:
    m = Measurement(name, n)
    for _ in range(repeat):
        m.walls.append(timed(fn))
    if memory:
        m.peak_bytes = peak_memory(fn)
    return m


def machine() -> dict[str, Any]:
    versions = {}
    for pkg in ("distributary", "dask", "distributed", "ray", "fsspec", "s3fs", "pyarrow", "cloudpickle"):
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:  # not installed: recorded as absent
            versions[pkg] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "packages": versions, "argv": sys.argv, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def table(rows: list[list[Any]], headers: list[str]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:.3g}" if abs(c) < 1000 else f"{c:.0f}"
    return str(c)


def save_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=str))
    return path


__all__ = ["Measurement", "measure", "timed", "peak_memory", "machine", "table", "save_json", "asdict"]


# -- resident-memory peaks (added for bench_ray: tracemalloc does not see memory a native library allocates,
#    such as the C++ core worker of a Ray driver, so the resident set is the fair measure there) ---------------
def rss_bytes() -> int:
    """This process's resident set size now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc), so one run's leftovers do not hide the next one's growth."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):
            pass


def timed_rss(fn: Callable[[], Any]) -> tuple[float, int]:
    """(wall seconds, peak growth of the resident set in bytes) of one call of `fn`, at no cost to the timing:
    the kernel's high-water mark is reset (/proc/self/clear_refs) before the call and read after it. Where that
    is not possible, a thread samples the resident set every 5 ms instead."""
    gc.collect()
    _trim_heap()
    base = rss_bytes()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        t0 = time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
        return wall, max(0, _hwm_bytes() - base)
    except OSError:
        import threading

        peak = [base]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.005):
                peak[0] = max(peak[0], rss_bytes())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        try:
            fn()
        finally:
            wall = time.perf_counter() - t0
            stop.set()
            sampler.join()
        return wall, max(0, peak[0] - base)


@dataclass
class RssMeasurement(Measurement):
    """A Measurement that also records the peak resident-set growth of each timed run."""

    rss_peaks: list[int] = field(default_factory=list)

    @property
    def peak_rss_bytes(self) -> int:
        return max(self.rss_peaks) if self.rss_peaks else 0

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "peak_rss_bytes": self.peak_rss_bytes, "rss_peaks": self.rss_peaks}


def measure_rss(name: str, n: int, fn: Callable[[], Any], repeat: int = 3,
                memory: bool = True) -> RssMeasurement:
    """Like `measure`, plus the resident-set peak of every timed run (`memory` adds the tracemalloc run)."""
    m = RssMeasurement(name, n)
    for _ in range(repeat):
        wall, peak = timed_rss(fn)
        m.walls.append(wall)
        m.rss_peaks.append(peak)
    if memory:
        m.peak_bytes = peak_memory(fn)
    return m


__all__ += ["rss_bytes", "timed_rss", "RssMeasurement", "measure_rss"]
