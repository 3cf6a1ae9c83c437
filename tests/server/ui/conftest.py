"""Browser fixtures for the web UI's tests: Debian's Chromium driven by Playwright (never `playwright install`:
the machine has no internet), one browser per test module, a fresh page per test whose screenshots are kept as test
artifacts, and helpers that run real flows into the server's run store."""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # browser.py and populate.py, shared with benchmarks/bench_ui.py
from browser import CHROMIUM, chromium_path, launch_chromium  # noqa: E402

ARTIFACTS = Path(os.environ.get("DISTRIBUTARY_TEST_ARTIFACTS", Path(__file__).resolve().parents[3] / "test-artifacts"))


# Module scope, not session: while Playwright's sync API is open it keeps an event loop running on the main
# thread, and every later test that calls asyncio.run() (tests/test_engine.py among them) would then fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        if chromium_path() is None:
            pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`); "
                        "scripts/test.sh does it")
        b = launch_chromium(p)
        try:
            yield b
        finally:
            b.close()


class Page:
    """A browser tab on the server with what the tests need: opening UI paths, screenshots, errors seen."""

    def __init__(self, page: Any, base_url: str, shots: Path):
        self.pw = page
        self.base_url = base_url.rstrip("/")
        self.shots = shots
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.accept_dialogs = False  # confirm() answers Cancel unless a test says otherwise
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        if self.accept_dialogs:
            dialog.accept()
        else:
            dialog.dismiss()

    def open(self, path: str) -> Any:
        resp = self.pw.goto(self.base_url + path)
        assert resp is not None and resp.ok, f"GET {path}: HTTP {resp.status if resp else '?'}"
        self.pw.wait_for_load_state("load")
        return resp

    def shot(self, name: str) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        self.pw.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def page(browser: Any, server: Any, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    p = Page(tab, server.url, ARTIFACTS / "ui" / request.node.name)
    try:
        yield p
    finally:
        with contextlib.suppress(Exception):
            p.shot("last")
        context.close()
    assert not p.errors, f"JavaScript errors on the page: {p.errors}"


@pytest.fixture
def record_into(server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Flows run by the test record into the server's run store (DISTRIBUTARY_HOME is the server's home)."""
    from distributary import runstore
    from distributary.runstore import storage

    runstore.stop_sink()
    storage.reset()
    monkeypatch.setenv("DISTRIBUTARY_HOME", str(server.home))
    monkeypatch.delenv("DISTRIBUTARY_API_DATABASE_CONNECTION_URL", raising=False)
    monkeypatch.delenv("DISTRIBUTARY_API_URL", raising=False)
    yield Path(server.home)
    runstore.stop_sink()
    storage.reset()

