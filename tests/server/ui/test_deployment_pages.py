"""The deployment and work-pool pages in a real browser (Debian's Chromium through Playwright) against a real
server process: the lists, a deployment's schedules and upcoming runs, the "Run" button creating a flow run with
the parameters typed in, and a work pool's workers and deployments."""
from __future__ import annotations

import re

import pytest

from distributary.runstore.api_storage import ApiRunStorage
from distributary.schedules import Cron

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def registered(server):
    api = ApiRunStorage(server.api_url)
    api.create_work_pool("nightly-pool", type="process", concurrency_limit=3)
    dep = api.create_deployment(flow_name="etl", name="nightly", entrypoint="flows.py:etl",
                                parameters={"source": "prod", "n": 1}, tags=["etl"],
                                schedules=[Cron("0 2 * * *", timezone="America/New_York")],
                                work_pool_name="nightly-pool")
    api.schedule_runs(dep.id)
    api.worker_heartbeat("nightly-pool", "worker-7")
    yield api, dep
    api.close()


def test_deployments_list_detail_and_run_button(page, registered):
    api, dep = registered
    page.open("/deployments")
    row = page.pw.locator("#deployments tbody tr").first
    assert "etl/nightly" in row.inner_text() and "cron 0 2 * * * (America/New_York)" in row.inner_text()
    page.shot("deployments")
    page.pw.click("text=etl/nightly")
    page.pw.wait_for_url(re.compile(rf"/deployments/{dep.id}$"))
    assert page.pw.locator("#upcoming tbody tr").count() == 3  # the runs scheduled ahead
    assert '"source": "prod"' in page.pw.input_value("#parameters")  # the defaults, to edit
    page.pw.fill("#parameters", '{"source": "backfill"}')
    page.shot("deployment")
    page.pw.click("#run-button")
    page.pw.wait_for_url(re.compile(r"/flow-runs/[0-9a-f-]{36}$"))
    run_id = page.pw.url.rsplit("/", 1)[1]
    run = api.read_flow_run(run_id)
    assert run.deployment_id == dep.id and run.parameters == {"source": "backfill", "n": 1}
    assert run.state_type.value == "SCHEDULED" and run.work_pool_name == "nightly-pool"
    page.shot("run-created")


def test_the_run_form_refuses_bad_json_and_other_sites(page, registered, server):
    api, dep = registered
    page.open(f"/deployments/{dep.id}")
    page.pw.fill("#parameters", "[1, 2")
    page.pw.click("#run-button")
    assert "must be a JSON object" in page.pw.locator("#run-error").inner_text()
    import httpx

    other = httpx.post(f"{server.url}/deployments/{dep.id}/run", data={"parameters": "{}"},
                       headers={"Origin": "https://evil.example"})
    assert other.status_code == 403
    assert api.read_due_runs([dep.id], before=None, limit=100) == []  # nothing due now: no run was created


def test_work_pools_list_and_detail(page, registered):
    api, dep = registered
    page.open("/work-pools")
    row = page.pw.locator("#work-pools tbody tr").first
    assert "nightly-pool" in row.inner_text() and "process" in row.inner_text()
    page.pw.click("text=nightly-pool")
    page.pw.wait_for_url(re.compile(r"/work-pools/nightly-pool$"))
    assert "worker-7" in page.pw.locator("#workers").inner_text()
    assert "etl/nightly" in page.pw.locator("#pool-deployments").inner_text()
    assert '"job_configuration"' in page.pw.locator("#job-template").inner_text()
    page.shot("work-pool")
    page.pw.click("#pool-deployments >> text=etl/nightly")
    page.pw.wait_for_url(re.compile(rf"/deployments/{dep.id}$"))
    missing = page.pw.goto(page.base_url + "/work-pools/nowhere")
    assert missing.status == 404 and "work-pool create nowhere" in page.pw.content()


def test_cancel_button_asks_first_then_cancels_and_is_gone_for_final_states(page, registered):
    api, dep = registered
    waiting = api.create_flow_run_from_deployment(dep.id)
    page.open(f"/flow-runs/{waiting.id}")
    page.pw.click("#cancel-run")  # the confirmation is dismissed: nothing happens
    assert page.dialogs and "Cancel this flow run?" in page.dialogs[0]
    assert api.read_flow_run(waiting.id).state_type.value == "SCHEDULED"
    page.accept_dialogs = True
    page.pw.click("#cancel-run")
    page.pw.wait_for_selector("#run-header >> text=Cancelled")
    assert api.read_flow_run(waiting.id).state_type.value == "CANCELLED"  # not started: Cancelled at once
    assert page.pw.locator("#cancel-run").count() == 0  # a final state has no Cancel button
    page.shot("cancelled")

    running = api.create_flow_run_from_deployment(dep.id)
    assert api.claim_flow_run(running.id, worker_name="worker-7")  # a worker has it: the cancel asks it to stop
    page.open(f"/flow-runs/{running.id}")
    page.pw.click("#cancel-run")
    page.pw.wait_for_selector("#cancel-run[disabled]")
    assert api.read_flow_run(running.id).state_type.value == "CANCELLING"
    assert str(running.id) in api.read_cancelling([running.id])  # what the worker polls for
    assert "Cancelling" in page.pw.inner_text("#cancel-run")
    page.shot("cancelling")


def test_the_run_form_names_a_parameter_the_schema_refuses(server):
    import httpx

    from distributary.deployments.parameters import parameter_schema

    def etl(source: str, n: int = 1) -> None: ...

    api = ApiRunStorage(server.api_url)
    dep = api.create_deployment(flow_name="etl", name="checked", entrypoint="flows.py:etl",
                                parameter_openapi_schema=parameter_schema(etl))
    form = f"{server.url}/deployments/{dep.id}/run"
    got = httpx.post(form, data={"parameters": '{"source": "x", "n": "many"}'}, headers={"Origin": server.url})
    assert got.status_code == 422 and 'id="run-error"' in got.text  # as for bad JSON
    assert "Validation failed for field &#39;n&#39;" in got.text  # the page again, naming the field
    assert api.read_flow_runs() == []
    ok = httpx.post(form, data={"parameters": '{"source": "x", "n": 2}'}, headers={"Origin": server.url})
    assert ok.status_code == 303 and api.read_flow_runs()[0].parameters == {"source": "x", "n": 2}
    api.close()
