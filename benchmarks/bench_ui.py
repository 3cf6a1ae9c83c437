"""Web UI scale benchmark (issue 12), measured in headless Chromium (Debian's, through Playwright) against a real
`distributary server start` process.

    flock /tmp/dlocks/heavy.lock python benchmarks/bench_ui.py [--tasks 100000] [--flow-runs 10000] [--repeat 5]

The store is filled by bulk writes through the run store (tests/server/ui/populate.py): one flow run with
`--tasks` task runs (3 tasks, every 97th fails), a baseline flow run with 100, `--flow-runs` flow runs of another
flow, and 10 of a small one. Figures, each the median of `--repeat` fresh page loads:

- flow-run page: from navigation to interactive (the task table's first page shown, the timeline drawn, the
  counts present), the big run against the 100-task baseline;
- scrolling: the task table's box scrolled by the wheel, 10 pages forward and a jump to the last page, the
  timeline zoomed by 20 wheel steps and dragged; the longest gap between animation frames while doing it
  (a "freeze" is a long gap) and the longest main-thread task Chromium reports;
- flow-runs list: navigation to the load event with `--flow-runs` runs in the store, against the list of the
  10-run flow;
- the JSON routes the flow-run page polls, timed from Python on loopback, big run against baseline.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (ROOT, ROOT / "tests", ROOT / "tests" / "server", ROOT / "tests" / "server" / "ui"):
    sys.path.insert(0, str(p))

# Installed before any page script: long main-thread tasks and the longest gap between animation frames.
OBSERVE = """
window.__long = [];
try { new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration); })
  .observe({ type: "longtask", buffered: true }); } catch (e) {}
window.__gap = 0;
(function () { let last = performance.now();
  function f(t) { window.__gap = Math.max(window.__gap, t - last); last = t; requestAnimationFrame(f); }
  requestAnimationFrame(f); })();
"""


def populate_store(home: Path, tasks: int, flow_runs: int) -> dict[str, str]:
    import os

    os.environ["DISTRIBUTARY_HOME"] = str(home)
    import populate

    from distributary.runstore import get_storage

    st = get_storage()
    t0 = time.perf_counter()
    (big,) = populate.flow_runs(st, 1, flow="big-map")
    populate.task_runs(st, big, tasks, fail_every=97, duration=120.0)
    (small,) = populate.flow_runs(st, 1, flow="small-map")
    populate.task_runs(st, small, 100, fail_every=97, duration=120.0)
    populate.flow_runs(st, flow_runs, flow="many", states=("COMPLETED",) * 9 + ("FAILED",))
    populate.flow_runs(st, 10, flow="few")
    print(f"populated {tasks} + 100 task runs and {flow_runs} + 12 flow runs in {time.perf_counter() - t0:.1f} s",
          flush=True)
    st.engine.dispose()
    return {"big": big, "small": small}


def open_run(browser, url: str, tasks: int) -> dict:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    ctx.add_init_script(OBSERVE)
    page = ctx.new_page()
    t0 = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.locator("#task-rows tr").nth(min(tasks, 100) - 1).wait_for()
    page.locator("#tl-info", has_text="task runs").wait_for()
    page.locator("[data-count-state=COMPLETED]").wait_for()
    ready = time.perf_counter() - t0
    nav = page.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
    long = page.evaluate("window.__long")
    return {"page": page, "ctx": ctx, "ready_s": ready, "nav": json.loads(nav), "longest_task_ms": max(long or [0])}


def interact(page) -> dict:
    """Scroll the table, page through it, zoom and drag the timeline; the longest frame gap and task while doing it."""
    page.evaluate("window.__gap = 0; window.__long = []")
    t0 = time.perf_counter()
    box = page.locator("#task-runs .scroll-y").bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 100)
    for _ in range(30):
        page.mouse.wheel(0, 200)
        page.wait_for_timeout(16)
    pages = int(page.locator("#tr-pages").inner_text())
    for i in range(min(10, pages - 1)):
        page.locator("button[data-page=next]").click()
        page.locator("#tr-range", has_text=f"{(i + 1) * 100 + 1}–").wait_for()
    page.locator("button[data-page=last]").click()
    total = page.locator("#tr-total").inner_text()
    page.locator("#tr-range", has_text=f"–{total}").wait_for()
    page.locator("#timeline").scroll_into_view_if_needed()
    cbox = page.locator("#tl-canvas").bounding_box()
    cx, cy = cbox["x"] + cbox["width"] * 0.6, cbox["y"] + cbox["height"] / 2
    page.mouse.move(cx, cy)
    for _ in range(20):
        page.mouse.wheel(0, -120)
        page.wait_for_timeout(16)
    page.mouse.down()
    for k in range(20):
        page.mouse.move(cx - 10 * k, cy)
        page.wait_for_timeout(16)
    page.mouse.up()
    page.wait_for_timeout(500)  # the zoomed view's buckets arrive
    took = time.perf_counter() - t0
    return {"interaction_s": took, "max_frame_gap_ms": page.evaluate("window.__gap"),
            "longest_task_ms": max(page.evaluate("window.__long") or [0])}


def list_load(browser, url: str) -> float:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    t0 = time.perf_counter()
    page.goto(url, wait_until="load")
    page.locator("#flow-runs tbody tr").first.wait_for()
    took = time.perf_counter() - t0
    ctx.close()
    return took


def route_times(base: str, run_id: str, tasks: int, repeat: int) -> dict[str, float]:
    """Median milliseconds of the JSON routes the flow-run page polls (loopback, one client)."""
    import httpx

    last = max(0, (tasks - 1) // 100 * 100)
    routes = {"summary": f"/api/ui/flow-runs/{run_id}/summary",
              "timeline_400": f"/api/ui/flow-runs/{run_id}/timeline?buckets=400",
              "task_page_first": f"/api/ui/flow-runs/{run_id}/task-runs?offset=0",
              "task_page_last": f"/api/ui/flow-runs/{run_id}/task-runs?offset={last}",
              "task_page_failed": f"/api/ui/flow-runs/{run_id}/task-runs?state=FAILED&offset=500",
              "flow_runs_list": "/api/ui/flow-runs"}
    out = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for name, path in routes.items():
            client.get(path).raise_for_status()
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                client.get(path).raise_for_status()
                times.append((time.perf_counter() - t0) * 1000)
            out[name] = round(statistics.median(times), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--flow-runs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from api_server import ServerProcess
    from browser import launch_chromium
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        srv = ServerProcess(Path(tmp))
        ids = populate_store(srv.home, args.tasks, args.flow_runs)
        srv.start()
        try:
            with sync_playwright() as pw:
                browser = launch_chromium(pw)
                out: dict = {"tasks": args.tasks, "flow_runs": args.flow_runs}
                warm = open_run(browser, f"{srv.url}/flow-runs/{ids['small']}", 100)  # server and browser caches
                warm["ctx"].close()
                for name, n in (("small", 100), ("big", args.tasks)):
                    runs = []
                    for _ in range(args.repeat):
                        r = open_run(browser, f"{srv.url}/flow-runs/{ids[name]}", n)
                        r.update(interact(r["page"]))
                        r["ctx"].close()
                        runs.append(r)
                    out[name] = {
                        "ready_s": statistics.median(r["ready_s"] for r in runs),
                        "dom_content_loaded_ms": statistics.median(r["nav"]["domContentLoadedEventEnd"] for r in runs),
                        "load_longest_task_ms": max(r["longest_task_ms"] for r in runs),
                        "interaction_s": statistics.median(r["interaction_s"] for r in runs),
                        "max_frame_gap_ms": max(r["max_frame_gap_ms"] for r in runs),
                    }
                    print(name, json.dumps(out[name]), flush=True)
                for name, path in (("list_few", "/flow-runs?flow=few"), ("list_all", "/flow-runs")):
                    list_load(browser, srv.url + path)  # warm
                    out[name + "_s"] = statistics.median(list_load(browser, srv.url + path)
                                                         for _ in range(args.repeat))
                    print(name, f"{out[name + '_s']:.3f} s", flush=True)
                browser.close()
            out["routes_ms_big"] = route_times(srv.url, ids["big"], args.tasks, args.repeat)
            out["routes_ms_small"] = route_times(srv.url, ids["small"], 100, args.repeat)
            print("routes", json.dumps(out["routes_ms_big"]), json.dumps(out["routes_ms_small"]), flush=True)
        finally:
            srv.stop()
    out["ratio_run_page"] = out["big"]["ready_s"] / out["small"]["ready_s"]
    out["ratio_list"] = out["list_all_s"] / out["list_few_s"]
    print(json.dumps({k: v for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()
