"""The concurrency-limits page in a real browser (Debian's Chromium through Playwright) against a real server: global
limits and tag-based task-run limits created through the API show their limit, their occupied slots and whether
they are active; the page's form creates a limit and its button deletes one."""
from __future__ import annotations

import re
import uuid

import httpx
import pytest

from distributary.runstore.api_storage import ApiRunStorage

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def api(server):
    api = ApiRunStorage(server.api_url)
    yield api
    api.close()


def _row(page, table: str, name: str):
    return page.pw.locator(f'#{table} tbody tr[data-name="{name}"]')


def test_the_page_shows_limits_made_through_the_api_and_their_occupied_slots(page, api, server):
    api.create_concurrency_limit("db-pool", 5)
    assert api.acquire_concurrency_slots(["db-pool"], slots=2).acquired
    api.create_concurrency_limit("paused-limit", 1, active=False)
    api.create_tag_concurrency_limit("heavy", 3)
    task_run = uuid.uuid4()
    with server.http() as http:  # what a task tagged "heavy" does as it starts (Prefect's v1 route)
        assert http.post("concurrency_limits/increment", json={"names": ["heavy"],
                                                                "task_run_id": str(task_run)}).status_code == 200
    page.open("/")
    page.pw.click("header nav >> text=Concurrency limits")
    page.pw.wait_for_url(re.compile(r"/concurrency-limits$"))
    db = _row(page, "global-limits", "db-pool").inner_text()
    assert "2 / 5" in db and "active" in db
    assert "inactive" in _row(page, "global-limits", "paused-limit").inner_text()
    heavy = _row(page, "tag-limits", "heavy")
    assert "1 / 3" in heavy.inner_text() and heavy.locator(f'a[href="/task-runs/{task_run}"]').count() == 1
    assert page.pw.locator("#global-limits tbody tr").count() == 2  # the tag limit is listed only under tags
    page.shot("limits")


def test_the_form_creates_a_limit_and_the_button_deletes_it(page, api, server):
    page.open("/concurrency-limits")
    page.pw.select_option("#kind", "tag")
    page.pw.fill("#limit-name", "gpu")
    page.pw.fill("#limit-value", "2")
    page.pw.click("#create-button")
    page.pw.wait_for_url(re.compile(r"/concurrency-limits$"))
    assert api.read_tag_concurrency_limit("gpu").concurrency_limit == 2
    assert "0 / 2" in _row(page, "tag-limits", "gpu").inner_text()
    page.pw.fill("#limit-name", "gpu")  # a global limit of the same name is another limit
    page.pw.locator("#limit-value").evaluate("e => e.type = 'text'")  # past the browser's own number check
    page.pw.fill("#limit-value", "x")
    page.pw.click("#create-button")
    assert "whole number" in page.pw.locator("#limit-error").inner_text()
    page.pw.fill("#limit-value", "4")
    page.pw.click("#create-button")
    page.pw.wait_for_url(re.compile(r"/concurrency-limits$"))
    assert api.read_concurrency_limit("gpu").limit == 4
    _row(page, "tag-limits", "gpu").locator("button.delete").click()
    page.pw.wait_for_url(re.compile(r"/concurrency-limits$"))
    assert [g.name for g in api.read_concurrency_limits()] == ["gpu"]  # the tag limit went, the global one stays
    assert _row(page, "tag-limits", "gpu").count() == 0
    gone = httpx.post(f"{server.url}/concurrency-limits/{api.read_concurrency_limit('gpu').id}/delete",
                      headers={"Origin": "https://evil.example"})
    assert gone.status_code == 403 and api.read_concurrency_limit("gpu").limit == 4
