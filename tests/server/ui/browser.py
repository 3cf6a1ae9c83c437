"""Launching Debian's Chromium through Playwright, headless (never `playwright install`: the machine has no
internet), for the UI's tests and its benchmark (benchmarks/bench_ui.py)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("DISTRIBUTARY_TEST_CHROMIUM", "/usr/bin/chromium")
# No sandbox (tests run as root), and none of the background traffic Chromium starts on its own: there is no
# network to reach and it would only retry.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


def launch_chromium(playwright: Any) -> Any:
    path = chromium_path()
    if path is None:
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
    return playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
