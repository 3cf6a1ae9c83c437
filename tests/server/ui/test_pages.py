"""The web UI in a real browser (Debian's Chromium through Playwright) against a real server process whose run
store holds runs of real flows: what a person looks for on each page, clicking through from the list to a run to
a task run, live updates while a flow runs, and markdown that cannot run scripts."""
from __future__ import annotations

import re
import threading

import populate
import pytest

from distributary import flow, get_run_logger, task
from distributary.artifacts import (
    create_image_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from distributary.variables import Variable

pytestmark = pytest.mark.timeout(180)

XSS = ("# Nightly report\n\n<script>window.__pwned = 1</script>\n\n<img src=x onerror=\"window.__pwned = 2\">\n\n"
       "[click](javascript:window.__pwned=3) and **bold**")
PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAA"
         "AABJRU5ErkJggg==")


@task
def double(x: int) -> int:
    get_run_logger().info("doubling %s", x)
    return 2 * x


@task
def check(x: int) -> int:
    if x % 10 == 3:
        raise ValueError(f"{x} is unlucky")
    return x


@flow
def child(n: int) -> int:
    get_run_logger().info("child flow here")
    return sum(double.map(range(n)).result())


@flow
def nightly(n: int = 30, label: str = "eu") -> int:
    get_run_logger().info("starting the nightly report")
    create_markdown_artifact(XSS, key="nightly-report", description="the **report**")
    create_table_artifact([{"region": "eu", "rows": 120}, {"region": "us", "rows": 340}], key="row-counts")
    create_progress_artifact(75, key="nightly-progress")
    create_link_artifact("https://example.com/dash", "the dashboard", key="dash-link")
    create_image_artifact(PIXEL, key="nightly-chart")
    total = sum(double.map(range(n)).result())
    states = check.map(range(20), return_state=True)
    failed = sum(1 for s in states if s.is_failed())
    get_run_logger().warning("%d checks failed", failed)
    return total + child(3)


@flow
def broken() -> None:
    raise RuntimeError("the warehouse is down")


def _run_id(page, name_part: str = "") -> str:
    href = page.pw.locator("#flow-runs tbody a[href^='/flow-runs/']").first.get_attribute("href")
    return href.rsplit("/", 1)[-1]


def test_click_from_the_list_to_a_run_to_a_task_run(page, record_into):
    nightly(30, "eu")
    page.open("/flow-runs")
    rows = page.pw.locator("#flow-runs tbody tr")
    assert rows.count() == 2  # nightly and its subflow
    parent_row = rows.filter(has_text="nightly").first
    assert "Completed" in parent_row.inner_text()
    page.shot("flow-runs")

    parent_row.locator("a").first.click()
    page.pw.wait_for_url(re.compile(r"/flow-runs/[0-9a-f-]{36}$"))
    header = page.pw.locator("#run-header")
    assert "nightly" in header.inner_text() and "Completed" in header.inner_text()
    assert '"n": 30' in page.pw.locator("pre.json").first.inner_text()
    # task-run counts by task and by state (20 checks: 2 fail, 3 and 13)
    by_task = page.pw.locator("#by-task tbody tr")
    texts = [by_task.nth(i).inner_text() for i in range(by_task.count())]
    assert any(t.startswith("double") and "30" in t for t in texts), texts
    assert any(t.startswith("check") and "20" in t for t in texts), texts
    assert page.pw.locator("[data-count-state=FAILED]").inner_text() == "2"
    assert page.pw.locator("#tr-total").inner_text() == "50"
    # a log line, and the table artifact rendered as a table
    page.pw.locator("#log-rows", has_text="starting the nightly report").wait_for()
    assert "2 checks failed" in page.pw.locator("#log-rows").inner_text()
    page.pw.select_option("#log-level", "30")  # warning and above
    page.pw.locator("#log-rows tr").first.filter(has_text="WARNING").wait_for()
    levels = set(page.pw.locator("#log-rows td:nth-child(2)").all_inner_texts())
    assert levels <= {"WARNING", "ERROR", "CRITICAL"} and "2 checks failed" in page.pw.locator("#log-rows").inner_text()
    assert "starting the nightly report" not in page.pw.locator("#log-rows").inner_text()
    cells = page.pw.locator("#artifacts .artifact-table td").all_inner_texts()
    assert cells == ["eu", "120", "us", "340"]
    assert page.pw.locator("#artifacts progress").get_attribute("value") == "75.0"
    assert page.pw.locator("#artifacts a", has_text="the dashboard").get_attribute("href") == "https://example.com/dash"
    assert page.pw.locator("#artifacts img.artifact-image").evaluate("img => img.naturalWidth") == 1
    assert page.pw.locator("#subflows tr", has_text="child").count() == 1
    # the timeline drew the task runs it aggregated
    page.pw.locator("#tl-info", has_text="50 task runs").wait_for()
    page.shot("flow-run")

    page.pw.locator("#task-rows a").first.click()
    page.pw.wait_for_url(re.compile(r"/task-runs/[0-9a-f-]{36}$"))
    assert page.pw.locator("h1").inner_text().startswith(("double", "check"))
    history = page.pw.locator("ol.history").inner_text()
    assert history.index("Pending") < history.index("Running") < history.index("Completed")
    assert "doubling" in page.pw.locator("#log-rows").inner_text() or "check" in page.pw.locator("h1").inner_text()
    page.shot("task-run")
    page.pw.locator("#flow-run-link").click()
    page.pw.wait_for_url(re.compile(r"/flow-runs/[0-9a-f-]{36}$"))

    page.pw.locator("#subflows tr", has_text="child").locator("a").first.click()
    page.pw.locator("#parent-link").wait_for()
    assert "child" in page.pw.locator("#run-header").inner_text()


def test_markdown_artifacts_render_as_text_and_run_no_script(page, record_into):
    nightly(3)
    page.open("/artifacts/key/nightly-report")
    md = page.pw.locator(".artifact .markdown")
    assert md.locator("h1").inner_text() == "Nightly report"
    assert md.locator("strong").inner_text() == "bold"
    text = md.inner_text()
    assert "<script>window.__pwned = 1</script>" in text and "onerror" in text
    assert md.locator("script, img").count() == 0
    assert md.locator("a[href^='javascript']").count() == 0
    page.pw.wait_for_timeout(300)
    assert page.pw.evaluate("typeof window.__pwned") == "undefined"
    page.shot("artifact-key")
    run_href = page.pw.locator("#versions a[href^='/flow-runs/']").first.get_attribute("href")
    page.open(run_href)
    page.pw.locator("#artifacts .markdown h1").wait_for()
    assert page.pw.evaluate("typeof window.__pwned") == "undefined"
    assert page.dialogs == []


started = threading.Event()
release = threading.Event()


@task
def wait_for_release(progress_id) -> str:
    get_run_logger().info("waiting for the test")
    started.set()
    assert release.wait(60), "the test never released the task"
    update_progress_artifact(progress_id, 100)
    get_run_logger().info("released at last")
    return "done"


@flow
def slow() -> str:
    progress_id = create_progress_artifact(10, key="slow-progress")
    return wait_for_release(progress_id)


def test_a_running_flow_shows_up_and_its_page_updates_itself(page, record_into):
    started.clear()
    release.clear()
    page.open("/flow-runs")
    page.pw.locator("#flow-runs tbody", has_text="No flow runs match").wait_for()
    runner = threading.Thread(target=slow)
    runner.start()
    try:
        assert started.wait(30)
        # the list is live: the new run appears without a reload
        page.pw.locator("#flow-runs tbody tr", has_text="Running").wait_for()
        assert page.pw.locator("#fr-total").inner_text() == "1"
        page.pw.locator("#flow-runs tbody a").first.click()
        page.pw.locator("#run-header .state", has_text="Running").wait_for()
        page.pw.evaluate("window.__same_page = true")
        page.pw.locator("#log-rows", has_text="waiting for the test").wait_for()
        assert page.pw.locator("#artifacts progress").get_attribute("value") == "10.0"
        page.shot("running")
        task_tab = page.pw.context.new_page()
        task_tab.goto(page.base_url + page.pw.locator("#task-rows a").first.get_attribute("href"))
        task_tab.locator("h1 .state", has_text="Running").wait_for()
        release.set()
        page.pw.locator("#run-header .state", has_text="Completed").wait_for(timeout=20_000)
        page.pw.locator("#log-rows", has_text="released at last").wait_for()
        page.pw.locator("#artifacts progress[value='100.0']").wait_for()
        assert page.pw.locator("[data-count-state=COMPLETED]").inner_text() == "1"
        assert "Completed" in page.pw.locator("#states").inner_text()
        assert page.pw.evaluate("window.__same_page") is True  # updated in place, not reloaded
        page.shot("completed")
        task_tab.locator("h1 .state", has_text="Completed").wait_for()  # the task run's page follows it too
        assert "released at last" in task_tab.locator("#log-rows").inner_text()
    finally:
        release.set()
        runner.join(60)


@flow
def fan(n: int) -> int:
    return sum(s.is_failed() for s in check.map(range(n), return_state=True))


def test_the_task_run_table_pages_on_the_server_and_filters_by_state_and_task(page, record_into):
    fan(250)  # 25 fail
    page.open("/flow-runs")
    page.pw.locator("#flow-runs tbody a").first.click()
    page.pw.locator("#tr-total", has_text="250").wait_for()
    assert page.pw.locator("#task-rows tr").count() == 100
    assert page.pw.locator("#tr-pages").inner_text() == "3"
    page.pw.locator("button[data-page=next]").click()
    page.pw.locator("#tr-range", has_text="101–200").wait_for()
    page.pw.locator("button[data-page=last]").click()
    page.pw.locator("#tr-range", has_text="201–250").wait_for()
    assert page.pw.locator("#task-rows tr").count() == 50

    page.pw.locator("#by-state [data-filter-state=FAILED]").click()
    page.pw.locator("#tr-total", has_text=re.compile(r"^25$")).wait_for()
    assert page.pw.locator("#task-rows tr").count() == 25
    assert set(page.pw.locator("#task-rows .state").all_inner_texts()) == {"Failed"}
    page.pw.locator("#by-task a[data-filter-task]").first.click()
    page.pw.locator("#tr-total", has_text="250").wait_for()
    page.pw.locator("#task-rows tr").first.locator("a").click()
    page.pw.wait_for_url(re.compile(r"/task-runs/"))
    assert page.pw.locator("h1 .state").inner_text() in ("Completed", "Failed")


def test_flow_runs_filter_by_flow_state_and_tag_and_page(page, record_into):
    from distributary.runstore import get_storage

    fan(5)
    fan(4)
    with pytest.raises(RuntimeError):
        broken()
    # Flow runs made by the engine carry no tags yet, so the tagged ones are written through the run store.
    populate.flow_runs(get_storage(), 120, flow="tagged", tags=["nightly-batch"], start=1.7e9)
    page.open("/flow-runs")
    assert page.pw.locator("#fr-total").inner_text() == "123"
    assert page.pw.locator("#flow-runs tbody tr").count() == 50
    page.pw.locator(".pager a[rel=next]").click()
    page.pw.wait_for_url(re.compile(r"page=2"))
    assert "page 2 of 3" in page.pw.locator(".pager").inner_text()
    assert page.pw.locator("#flow-runs tbody tr").count() == 50

    page.open("/flow-runs")
    page.pw.select_option("select[name=state]", "FAILED")
    page.pw.locator("button[type=submit]").click()
    page.pw.wait_for_url(re.compile(r"state=FAILED"))
    rows = page.pw.locator("#flow-runs tbody tr")
    assert rows.count() == 1 and "broken" in rows.inner_text()
    page.open("/flow-runs?tag=nightly-batch")
    assert page.pw.locator("#fr-total").inner_text() == "120"
    assert "nightly-batch" in page.pw.locator("#flow-runs tbody tr").first.inner_text()
    page.open("/flow-runs?flow=fan")
    assert page.pw.locator("#fr-total").inner_text() == "2"
    page.open("/flow-runs?flow=tagged&since=2023-11-14T22:14&until=2023-11-14T22:15")  # 1.7e9 + 40 s .. + 100 s
    assert page.pw.locator("#fr-total").inner_text() == "61"


def test_dashboard_flows_artifacts_and_variables(page, record_into):
    fan(3)
    with pytest.raises(RuntimeError):
        broken()
    create_markdown_artifact("first version", key="weekly")
    create_markdown_artifact("second version", key="weekly")
    Variable.set("region", {"name": "eu-west", "replicas": 3})

    page.open("/")
    failures = page.pw.locator("section", has_text="Failures")
    assert "broken" in failures.inner_text() and "the warehouse is down" in failures.inner_text()
    assert page.pw.locator("svg.histogram rect").count() >= 2
    page.shot("dashboard")

    page.open("/flows")
    flows = page.pw.locator("#flows tbody").inner_text()
    assert "fan" in flows and "broken" in flows
    page.pw.locator("#flows a", has_text="broken").first.click()
    page.pw.wait_for_url(re.compile(r"flow=broken"))
    assert page.pw.locator("#fr-total").inner_text() == "1"

    page.open("/artifacts")
    row = page.pw.locator("#artifact-keys tr", has_text="weekly")
    assert row.locator("td").nth(2).inner_text() == "2"
    row.locator("a").first.click()
    assert page.pw.locator(".artifact .markdown").inner_text().strip() == "second version"
    assert page.pw.locator("#versions tbody tr").count() == 2
    page.pw.locator("#versions a", has_text="view").last.click()
    assert "first version" in page.pw.locator(".markdown").inner_text()

    page.open("/variables")
    text = page.pw.locator("#variables tbody").inner_text()
    assert "region" in text and "eu-west" in text


def test_unknown_runs_and_bad_filters_get_a_page_that_says_so(page, server, record_into):
    resp = page.pw.goto(server.url + "/flow-runs/00000000-0000-0000-0000-000000000000")
    assert resp.status == 404
    assert "no flow run with id 00000000-0000-0000-0000-000000000000" in page.pw.locator("main").inner_text()
    resp = page.pw.goto(server.url + "/task-runs/not-a-uuid")
    assert resp.status == 404 and "'not-a-uuid' is not a task run id" in page.pw.locator("main").inner_text()
    resp = page.pw.goto(server.url + "/flow-runs?since=yesterday")
    assert resp.status == 422 and "since: 'yesterday' is not a date and time" in page.pw.locator("main").inner_text()
    assert page.pw.locator("nav a", has_text="Flow runs").count() == 1


def test_with_auth_on_the_ui_asks_for_it_and_never_shows_it(browser, start_server, monkeypatch):
    secret = "admin:s3cret-Pa55"
    srv = start_server(env={"DISTRIBUTARY_SERVER_API_AUTH_STRING": secret})
    anonymous = browser.new_context()
    try:
        resp = anonymous.request.get(srv.url + "/flow-runs")
        assert resp.status == 401 and resp.headers["www-authenticate"].startswith("Basic")
    finally:
        anonymous.close()
    from distributary import runstore
    from distributary.runstore import storage

    runstore.stop_sink()
    storage.reset()
    monkeypatch.setenv("DISTRIBUTARY_HOME", str(srv.home))
    try:
        fan(3)
        Variable.set("not-a-secret", "plain value")
    finally:
        runstore.stop_sink()
        storage.reset()
    user, password = secret.split(":")
    ctx = browser.new_context(http_credentials={"username": user, "password": password})
    try:
        tab = ctx.new_page()
        pages = ["/", "/flow-runs", "/flows", "/artifacts", "/variables"]
        tab.goto(srv.url + "/flow-runs")
        pages.append(tab.locator("#flow-runs tbody a").first.get_attribute("href"))
        for path in pages:
            resp = tab.goto(srv.url + path)
            assert resp.ok, path
            assert password not in tab.content() and secret not in tab.content(), path
        run_id = pages[-1].rsplit("/", 1)[-1]
        for path in [f"/api/ui/flow-runs/{run_id}/summary", f"/api/ui/flow-runs/{run_id}/timeline",
                     f"/api/ui/logs?flow_run_id={run_id}", "/api/ui/flow-runs"]:
            body = tab.goto(srv.url + path).text()
            assert password not in body, path
    finally:
        ctx.close()


def test_the_dashboard_flows_artifacts_and_variables_update_themselves(page, record_into):
    tabs = {}
    for path in ("/", "/flows", "/artifacts", "/variables"):
        tab = page.pw if not tabs else page.pw.context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
        tab.goto(page.base_url + path)
        tab.evaluate("window.__same_page = true")
        tabs[path] = (tab, errors)
    assert "No failed or crashed flow runs" in tabs["/"][0].locator("section", has_text="Failures").inner_text()

    with pytest.raises(RuntimeError):
        broken()
    create_markdown_artifact("fresh notes", key="live-notes")
    Variable.set("live-region", "eu-north")

    failures = tabs["/"][0].locator("section", has_text="Failures")
    failures.locator("td", has_text="the warehouse is down").wait_for()
    tabs["/flows"][0].locator("#flows tbody", has_text="broken").wait_for()
    tabs["/artifacts"][0].locator("#artifact-keys", has_text="live-notes").wait_for()
    tabs["/variables"][0].locator("#variables tbody", has_text="eu-north").wait_for()
    for path, (tab, errors) in tabs.items():
        assert tab.evaluate("window.__same_page") is True, f"{path} was reloaded instead of updated in place"
        assert not errors, f"JavaScript errors on {path}: {errors}"
    page.shot("dashboard-live")
