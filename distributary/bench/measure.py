"""What one benchmark point records (`Measurement`), how it is timed and how driver memory is measured, the
machine description stored with every sweep, and the plain-text progress bar.

Wall times come from `time.perf_counter` around whole runs. Driver peak memory is measured two ways, as in
`benchmarks/common.py` (which the package cannot import): the peak of Python allocations during one extra run
traced by `tracemalloc` (tracing would slow the timed runs), and the peak growth of the resident set during each
timed run (free to measure; it also sees native memory such as Ray's C++ core worker).
"""
from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TextIO

IMPLS = ("distributary", "raw", "prefect")
_PACKAGES = ("distributary", "dask", "distributed", "ray", "fsspec", "s3fs", "pyarrow", "cloudpickle", "pydantic",
             "matplotlib", "psutil", "moto", "numpy")


@dataclass
class Measurement:
    """Every run of one (scenario, runner, implementation, N) point.

    `impl` is "distributary", "raw" (the runner's own API doing the same work, one task per item),
    "raw_batched" / "raw_bag" (the hand-batched forms on Dask and Ray: one cluster task per chunk, dask.bag) or
    "prefect" (Prefect 3 on the same cluster). `startup_s` is the runner's cluster start-up time, measured once per sweep and never part of
    `walls`. `task_s` is the nominal work inside one task (0 for the trivial tasks of the built-in suite).
    """

    scenario: str
    runner: str
    kind: str
    impl: str
    n: int
    walls: list[float] = field(default_factory=list)
    peak_bytes: int | None = None
    startup_s: float | None = None
    parallelism: int | None = None
    task_s: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    rss_peaks: list[int] = field(default_factory=list)
    load_1min: float | None = None
    error: str | None = None
    note: str = ""

    @property
    def rss_peak_bytes(self) -> int | None:
        """Largest growth of the driver's resident set over the timed runs (None where not measurable)."""
        return max(self.rss_peaks) if self.rss_peaks else None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.walls)

    @property
    def wall(self) -> float:
        """Median wall time over the repeats, in seconds."""
        return statistics.median(self.walls)

    @property
    def wall_min(self) -> float:
        return min(self.walls)

    @property
    def wall_max(self) -> float:
        return max(self.walls)

    @property
    def per_task_us(self) -> float:
        return self.wall / self.n * 1e6

    @property
    def tasks_per_s(self) -> float:
        return self.n / self.wall if self.wall > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.ok:
            out.update(wall_median_s=self.wall, wall_min_s=self.wall_min, wall_max_s=self.wall_max,
                       per_task_us=self.per_task_us, tasks_per_s=self.tasks_per_s)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def timed(fn: Callable[[], Any]) -> tuple[float, int | None]:
    """(seconds one call of `fn` takes, growth of this process's resident set at its peak during the call).

    Runs after a garbage collection and a heap trim, so earlier runs' garbage is not billed. The peak costs
    nothing to measure: the kernel's high-water mark is reset before the call (/proc/self/clear_refs) and read
    after it; it includes native memory tracemalloc cannot see (e.g. Ray's C++ core worker). None off Linux."""
    gc.collect()
    _trim_heap()
    base = _rss_reset()
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    return wall, (max(0, _proc_status("VmHWM") - base) if base is not None else None)


def _proc_status(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field_name} in /proc/self/status")


def _rss_reset() -> int | None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return _proc_status("VmRSS")
    except OSError:
        return None


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


def peak_python_bytes(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated by Python in this process (all threads) while `fn` runs, results included."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """Machine, Python and package versions, recorded with every sweep."""
    from importlib.metadata import PackageNotFoundError, version

    packages: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    info: dict[str, Any] = {
        "python": platform.python_version(), "implementation": platform.python_implementation(),
        "executable": sys.executable, "platform": platform.platform(), "machine": platform.machine(),
        "processor": platform.processor(), "cpus": os.cpu_count(), "load_average": load_average(),
        "packages": packages,
    }
    try:
        import psutil

        info["memory_total_bytes"] = psutil.virtual_memory().total
        info["cpus_physical"] = psutil.cpu_count(logical=False)
    except ImportError:
        pass
    return info


STOP_REQUESTED = threading.Event()  # set by the CLI on SIGTERM or SIGINT; checked at every step of the sweep


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, one line per step otherwise (logs, CI).
    Every step also raises KeyboardInterrupt once a stop was requested: an interrupt raised while the garbage
    collector runs a callback is swallowed by Python, so the request must not rest on that one exception."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 28, enabled: bool = True):
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.enabled = enabled
        self.t0 = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_len = 0

    def step(self, label: str, count: int = 1) -> None:
        """Record that a step is starting (`label`) once `count` steps are done."""
        if STOP_REQUESTED.is_set():
            raise KeyboardInterrupt("stop requested")
        self.update(label)
        self.done = min(self.total, self.done + count)

    def update(self, label: str) -> None:
        if not self.enabled:
            return
        frac = self.done / self.total
        filled = int(frac * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        line = (f"[{bar}] {self.done}/{self.total} {frac:4.0%} {_clock(time.monotonic() - self.t0)} "
                f"{label}")
        if self.tty:
            pad = max(0, self._last_len - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._last_len = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line of its own (start-up times, installs, warnings) without breaking the bar; shown even when the
        bar itself is off."""
        if self.enabled and self.tty and self._last_len:
            self.stream.write("\r" + " " * self._last_len + "\r")
            self._last_len = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        self.done = self.total
        self.update("done")
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


__all__ = ["Measurement", "timed", "peak_python_bytes", "machine_info", "load_average", "Progress", "IMPLS"]
