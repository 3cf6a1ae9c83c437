"""The `distributary` console script: `version`, `config view`, `bench` (see `distributary --help`)."""
from __future__ import annotations

import argparse
import platform
import sys
from typing import Sequence


def _version(args: argparse.Namespace) -> int:
    from . import __version__

    print(f"distributary {__version__}")
    print(f"python       {platform.python_version()} ({sys.executable})")
    print(f"platform     {platform.platform()}")
    return 0


def _config_view(args: argparse.Namespace) -> int:
    from . import settings

    rows = settings.view(show_defaults=not args.hide_defaults)
    for env, value, source in rows:
        print(f"{env}={value!r} ({source})")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench.cli import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distributary", description="distributary workflow engine")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("version", help="show versions")
    p.set_defaults(func=_version)
    cfg = sub.add_parser("config", help="settings")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    v = cfg_sub.add_parser("view", help="show the DISTRIBUTARY_* settings in effect")
    v.add_argument("--hide-defaults", action="store_true", help="only show settings set in the environment")
    v.set_defaults(func=_config_view)
    try:
        from .bench.cli import add_arguments
    except ImportError:
        add_arguments = None
    if add_arguments is not None:
        b = sub.add_parser("bench", help="scaling benchmarks across task runners")
        add_arguments(b)
        b.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
