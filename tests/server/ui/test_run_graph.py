"""The flow-run page's run graph in Chromium: the dependencies of real flow runs (a direct call given another's
result, `b(a())`, and a map over a map's futures) drawn as arrows between task runs, or between tasks past a few
hundred task runs; clicking a node opens its task run or filters the table to its task."""
from __future__ import annotations

import re

import pytest

from distributary import flow, task
from distributary.server.ui.queries import GRAPH_MAX_RUNS
from distributary.task_runners import ThreadPoolTaskRunner

pytestmark = pytest.mark.timeout(120)


@task
def a() -> list:
    return [1, 2]


@task
def b(xs: list) -> int:
    return sum(xs)


@task
def square(x: int) -> int:
    return x * x


@task
def half(x: int) -> float:
    return x / 2


@flow
def chained() -> int:
    a()  # no dependency: a run on its own
    return b(a())


@flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
def fanned(n: int) -> float:
    return sum(half.map(square.map(range(n))).result())


def _graph(page, mode: str):
    canvas = page.pw.locator(f"#graph-canvas[data-mode={mode}]")
    canvas.wait_for(state="attached")
    return canvas


def test_the_graph_draws_b_of_a_as_an_edge_between_task_runs(page, record_into):
    assert chained() == 3
    page.open("/flow-runs")
    page.pw.locator("#flow-runs tbody a[href^='/flow-runs/']").first.click()
    canvas = _graph(page, "task_runs")
    assert canvas.get_attribute("data-nodes") == "3" and canvas.get_attribute("data-edges") == "1"
    assert page.pw.locator("#graph-info").inner_text() == "3 task runs · 1 dependency"
    page.shot("run-graph")
    # the first layer holds the two runs of a (no upstream); the second holds b, drawn right of them; the node at
    # the top of the second column is b's run, its task-run page one click away
    page.pw.mouse.move(0, 0)
    canvas.click(position={"x": 12 + 230 + 20, "y": 12 + 10})
    page.pw.wait_for_url(re.compile(r"/task-runs/[0-9a-f-]{36}$"))
    assert page.pw.locator("h1").inner_text().startswith("b-0")


def test_past_a_few_hundred_task_runs_the_graph_has_a_node_per_task(page, record_into):
    n = GRAPH_MAX_RUNS // 2 + 10  # two tasks: more task runs than drawn one by one
    fanned(n)
    page.open("/flow-runs")
    page.pw.locator("#flow-runs tbody a[href^='/flow-runs/']").first.click()
    canvas = _graph(page, "tasks")
    assert canvas.get_attribute("data-nodes") == "2" and canvas.get_attribute("data-edges") == "1"
    assert page.pw.locator("#graph-info").inner_text() == f"{2 * n} task runs as 2 tasks · 1 dependency"
    page.shot("task-graph")
    # a task's node filters the task-run table to its runs (square is upstream: the first column)
    canvas.click(position={"x": 12 + 20, "y": 12 + 10})
    page.pw.locator("#tr-filter", has_text="task square").wait_for()
    assert page.pw.locator("#tr-total").inner_text() == str(n)
