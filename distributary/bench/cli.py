"""The `distributary bench` command: arguments (`add_arguments`) and what it does (`run_bench`).

    distributary bench                                   # the built-in suite on threads, processes, dask, ray
    distributary bench --smoke                           # tiny sizes, one minute: checks every code path
    distributary bench flows.py:etl --size-param n --param n=250000 --sizes 1e2,1e3,1e4 \\
        --runners "threads,dask(n_workers=2),ray(num_cpus=2)" --repeat 3
"""
from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ..errors import DistributaryError
from .spec import SYNTAX_HELP

DEFAULT_RUNNERS = "threads,processes,dask,ray"
SMOKE_RUNNERS = "threads,processes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = ("Scaling benchmarks across task runners. Without FLOW: the built-in suite, each scenario "
                          "against the runner's raw API in the same run. With FLOW (file.py:flow_name): the same "
                          "sweep on your flow, its size parameter set to each of --sizes.")
    parser.epilog = "Runner specs. " + SYNTAX_HELP
    parser.add_argument("flow", nargs="?", metavar="FLOW", help="your flow as path/to/file.py:flow_name")
    parser.add_argument("--runners", help=f"runners to compare (default {DEFAULT_RUNNERS}; with --smoke "
                                          f"{SMOKE_RUNNERS}); see below")
    parser.add_argument("--sizes", help="values of N, e.g. 1e2,1e3,1e4,1e5 (default 1e2..1e6, each scenario "
                                        "capped per runner; with --smoke 10,40)")
    parser.add_argument("--repeat", type=int, help="timed runs per point (default 3; with --smoke 2)")
    parser.add_argument("--repeat-long", type=int, default=1,
                        help="timed runs of a point expected to take over --long-seconds (default 1)")
    parser.add_argument("--long-seconds", type=float, default=60.0,
                        help="a run expected to take longer is repeated --repeat-long times and its memory is not "
                             "traced (default 60)")
    parser.add_argument("--scenarios", help="built-in scenarios to run, comma-separated (default: all): "
                                            "fanout, fanout_1mb, chain, map_reduce, cache_local, cache_s3, "
                                            "arrow_local, arrow_s3")
    parser.add_argument("--size-param", default="n", help="the FLOW parameter set to N (default n)")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                        help="a fixed FLOW parameter (VALUE is JSON or text; repeatable). Giving the size "
                             "parameter here sets the N the advice is for")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and a 1 MiB table: a quick check")
    parser.add_argument("--out", help="folder for results.json, report.md and plot.png "
                                      "(default ./distributary-bench/<date-time>)")
    parser.add_argument("--advise-n", type=float, help="N to advise a runner for (default: the size parameter "
                                                       "given with --param, else the largest N measured)")
    parser.add_argument("--task-seconds", type=float, default=0.0,
                        help="extra work per task for the advice, in seconds of CPU-bound Python (default 0)")
    parser.add_argument("--no-memory", action="store_true", help="skip the traced run measuring driver memory")
    parser.add_argument("--memory-max-n", type=float, default=1e5, help="largest N whose memory is measured")
    parser.add_argument("--no-caps", action="store_true", help="run every size on every scenario and runner")
    parser.add_argument("--max-seconds", type=float, default=300.0,
                        help="skip a size whose run would take longer than this (extrapolated; default 300)")
    parser.add_argument("--arrow-mib", type=int, help="size of the Arrow table scenarios (default 100 MiB)")
    parser.add_argument("--with-prefect", action="store_true",
                        help="also run the scenarios on Prefect 3 (installed on first use into its own "
                             "virtualenv under ~/.cache/distributary/prefect-venv)")
    parser.add_argument("--prefect-repeat", type=int, default=1,
                        help="timed runs per point on Prefect (default 1: the gap is far wider than the noise)")
    parser.add_argument("--prefect-max-n", type=float, default=1e3,
                        help="largest N run on Prefect (default 1e3: Prefect takes ~45 ms per task here)")
    parser.add_argument("--from-json", metavar="PATH", nargs="+",
                        help="rebuild table, report, plot and advice from saved results.json files instead of "
                             "running; several files (e.g. one sweep per runner) are merged into one report")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the PNG plot")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _fail(message: str) -> int:
    print(f"distributary bench: error: {message}", file=sys.stderr)
    return 2


def run_bench(args: argparse.Namespace) -> int:
    # `kill` (SIGTERM) and Ctrl-C unwind the sweep, so the clusters and the S3 server it started are stopped.
    previous = _stop_on_signals()
    try:
        return _run(args)
    except DistributaryError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("\ndistributary bench: interrupted", file=sys.stderr)
        return 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop_on_signals() -> dict[int, Any]:
    """Raise KeyboardInterrupt on SIGTERM and SIGINT, and flag the stop for the sweep to see at its next step."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    from .measure import STOP_REQUESTED

    STOP_REQUESTED.clear()

    def handler(signum: int, frame: Any) -> None:
        STOP_REQUESTED.set()
        raise KeyboardInterrupt(f"signal {signum}")
    return {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}


def _run(args: argparse.Namespace) -> int:
    from .spec import parse_params, parse_runners, parse_sizes
    from .sweep import SweepResult, run_sweep

    params = parse_params(args.param)
    advise_n = int(args.advise_n) if args.advise_n else None
    if args.flow and args.size_param in params:
        size_value = params.pop(args.size_param)
        if advise_n is None and isinstance(size_value, (int, float)):
            advise_n = int(size_value)
    if args.flow is None and (args.param or args.size_param != "n"):
        raise _usage("--param and --size-param apply to a FLOW (file.py:flow_name); none was given.")
    if args.flow is not None and args.scenarios:
        raise _usage("--scenarios selects built-in scenarios; it cannot be combined with a FLOW.")
    if args.from_json:
        result = SweepResult.merge([SweepResult.read(p) for p in args.from_json])
        out = Path(args.out) if args.out else Path(args.from_json[0]).resolve().parent
    else:
        runners = parse_runners(args.runners or (SMOKE_RUNNERS if args.smoke else DEFAULT_RUNNERS))
        sizes = parse_sizes(args.sizes) if args.sizes else None
        repeat = args.repeat or (2 if args.smoke else 3)
        scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()] if args.scenarios else None
        out = Path(args.out) if args.out else Path("distributary-bench") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        result = run_sweep(runners, scenarios, sizes, repeat, flow=args.flow, size_param=args.size_param,
                           params=params, smoke=args.smoke, memory=not args.no_memory,
                           memory_max_n=int(args.memory_max_n), caps=not args.no_caps,
                           max_seconds=args.max_seconds or None, with_prefect=args.with_prefect,
                           prefect_max_n=int(args.prefect_max_n), arrow_mib=args.arrow_mib,
                           repeat_long=args.repeat_long, long_seconds=args.long_seconds,
                           prefect_repeat=args.prefect_repeat,
                           progress=not args.no_progress)
    return _report(result, out, advise_n, args)


def _usage(message: str) -> DistributaryError:
    from ..errors import ConfigurationError

    return ConfigurationError(message)


def _report(result: Any, out: Path, advise_n: int | None, args: argparse.Namespace) -> int:
    from .report import startup_lines, targets_text, write_all

    written = write_all(result, out, advise_n, args.task_seconds, make_plot=not args.no_plot)
    print(written["table"])
    print()
    starts = startup_lines(result)
    if starts:
        print("Cluster start-up (once per runner; not in the wall times): " + "; ".join(starts))
    failed = [m for m in result.measurements if m.error and not m.error.startswith("skipped")]
    if failed:
        print(f"{len(failed)} point(s) failed; see the Notes in {written['markdown']}:")
        for m in failed[:5]:
            print(f"  {m.scenario} {m.runner} {m.impl} N={m.n}: {m.error[:200]}")
    for note in result.notes:
        print(f"Note: {note}")
    if written["targets"]:
        print("\nTargets:")
        print(targets_text(written["targets"]))
    if written["advice"] is not None:
        print("\nAdvice:")
        print(written["advice"].explanation)
    print(f"\nJSON:     {written['json']}\nMarkdown: {written['markdown']}"
          + (f"\nPlot:     {written['png']}" if written["png"] else ""))
    return 0


__all__ = ["add_arguments", "run_bench"]
