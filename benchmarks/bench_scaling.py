"""The scaling suite of `distributary bench` (scenarios in distributary/bench/scenarios.py), run from the
benchmarks folder with its results kept in benchmarks/results/ (gitignored):

    python benchmarks/bench_scaling.py                                   # all scenarios, all four runners
    python benchmarks/bench_scaling.py --runners threads,processes --sizes 1e2,1e3,1e4 --repeat 3
    python benchmarks/bench_scaling.py --scenarios cache_local,cache_s3 --with-prefect

Every option of `distributary bench` applies (see `distributary bench --help` and benchmarks/README.md).
Writes results.json, report.md and plot.png to benchmarks/results/scaling-<date-time>/ unless --out is given.
"""
from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str]) -> int:
    os.environ.setdefault("DISTRIBUTARY_LOGGING_LEVEL", "WARNING")
    from distributary.cli import main as cli_main

    if "--out" not in argv and not any(a.startswith("--out=") for a in argv):
        argv = [*argv, "--out", str(RESULTS / f"scaling-{dt.datetime.now():%Y%m%d-%H%M%S}")]
    return cli_main(["bench", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
