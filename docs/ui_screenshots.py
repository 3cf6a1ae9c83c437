"""Makes the README's screenshots of the web UI: runs a small demo flow into a real server's store and saves
two views from headless Chromium.

    python docs/ui_screenshots.py        # writes docs/ui-flow-run.png and docs/ui-flow-runs.png
"""
from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (ROOT, ROOT / "tests", ROOT / "tests" / "server", ROOT / "tests" / "server" / "ui"):
    sys.path.insert(0, str(p))


def demo_runs() -> None:
    from distributary import flow, get_run_logger, task
    from distributary.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact
    from distributary.task_runners import ThreadPoolTaskRunner

    @task
    def extract(i: int) -> int:
        time.sleep(random.uniform(0, 0.01))
        return i

    @task(retries=1, retry_delay_seconds=0)
    def transform(i: int) -> int:
        time.sleep(random.uniform(0, 0.02))
        if i % 211 == 7:
            raise ValueError(f"row {i} is malformed")
        return 2 * i

    @task
    def load(rows: list) -> int:
        get_run_logger().info("loaded %d rows", len(rows))
        return len(rows)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=8))
    def nightly_etl(n: int = 2000, region: str = "eu-west") -> int:
        log = get_run_logger()
        log.info("extracting %d partitions from %s", n, region)
        raw = extract.map(range(n))
        states = transform.map(raw, return_state=True)
        good = [s.result() for s in states if s.is_completed()]
        log.warning("%d partitions failed to transform", n - len(good))
        create_table_artifact([{"region": region, "rows": len(good), "failed": n - len(good)}], key="etl-summary")
        create_markdown_artifact(f"# Nightly ETL\n\n**{len(good)}** partitions loaded.", key="etl-report")
        create_progress_artifact(100, key="etl-progress")
        return load(good)

    @flow
    def refresh_dashboards(team: str) -> None:
        get_run_logger().info("refreshing the %s dashboards", team)
        if team == "finance":
            raise RuntimeError("the warehouse connection timed out")

    for team in ("sales", "finance", "ops"):
        try:
            refresh_dashboards(team)
        except RuntimeError:
            pass
    for region in ("eu-west", "us-east"):
        nightly_etl(2000, region)


def main() -> None:
    from api_server import ServerProcess
    from browser import launch_chromium
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="ui-shots-") as tmp:
        srv = ServerProcess(Path(tmp))
        os.environ["DISTRIBUTARY_HOME"] = str(srv.home)
        demo_runs()
        srv.start()
        try:
            with sync_playwright() as pw:
                browser = launch_chromium(pw)
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(srv.url + "/flow-runs")
                page.screenshot(path=str(HERE / "ui-flow-runs.png"), clip={"x": 0, "y": 0, "width": 1280, "height": 330})
                page.locator("#flow-runs tbody a").first.click()
                page.locator("#tl-info", has_text="task runs").wait_for()
                page.wait_for_timeout(300)
                page.screenshot(path=str(HERE / "ui-flow-run.png"))
                browser.close()
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
