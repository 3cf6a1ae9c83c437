"""The web UI of a server whose run store is PostgreSQL (a real PostgreSQL 15 server), in the browser: a flow
recorded into it shows with its counts, its timeline and its failed task runs."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "runstore"))
from pg_server import PostgresServer  # noqa: E402

from distributary import flow, task  # noqa: E402

pytestmark = pytest.mark.timeout(240)


@task
def parse(x: int) -> int:
    if x % 7 == 0:
        raise ValueError(f"line {x} does not parse")
    return x


@flow
def ingest(n: int) -> int:
    return sum(s.is_completed() for s in parse.map(range(n), return_state=True))


def test_a_server_on_postgresql_shows_runs_counts_and_failed_task_runs(browser, start_server, monkeypatch):
    from distributary import runstore
    from distributary.runstore import storage

    with PostgresServer() as pg:
        url = pg.create_database("ui")
        srv = start_server(env={"DISTRIBUTARY_API_DATABASE_CONNECTION_URL": url})
        try:
            runstore.stop_sink()
            storage.reset()
            monkeypatch.setenv("DISTRIBUTARY_API_DATABASE_CONNECTION_URL", url)
            try:
                assert ingest(140) == 120
            finally:
                runstore.stop_sink()
                storage.reset()
            ctx = browser.new_context()
            errors: list[str] = []
            try:
                tab = ctx.new_page()
                tab.on("pageerror", lambda exc: errors.append(str(exc)))
                tab.goto(srv.url + "/flow-runs")
                assert "Completed" in tab.locator("#flow-runs tbody tr").first.inner_text()
                tab.locator("#flow-runs tbody a").first.click()
                tab.wait_for_url(re.compile(r"/flow-runs/[0-9a-f-]{36}$"))
                assert tab.locator("[data-count-state=FAILED]").inner_text() == "20"
                assert tab.locator("[data-count-state=COMPLETED]").inner_text() == "120"
                tab.locator("#tl-info", has_text="140 task runs").wait_for()
                tab.locator("#by-state [data-filter-state=FAILED]").click()
                tab.locator("#tr-total", has_text=re.compile(r"^20$")).wait_for()
                assert set(tab.locator("#task-rows .state").all_inner_texts()) == {"Failed"}
                tab.locator("#task-rows a").first.click()
                tab.wait_for_url(re.compile(r"/task-runs/"))
                assert "does not parse" in tab.locator(".state-message").inner_text()
            finally:
                ctx.close()
            assert not errors, errors
        finally:
            srv.stop()
