"""Seed example "Creating Tasks with Retries" (only the import lines differ from Prefect's)."""
import httpx

from distributary import flow, task
from distributary.tasks import exponential_backoff


def retry_handler(task, task_run, state) -> bool:
    """Skip retries for 401/404 status codes."""
    try:
        state.result()
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code not in [401, 404]
    except httpx.ConnectError:
        return False
    return True


@task(
    retries=4,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=retry_handler
)
def fetch_data(url: str):
    response = httpx.get(url)
    response.raise_for_status()
    return response.json()


@flow
def data_pipeline(urls: list[str]):
    results = []
    for url in urls:
        results.append(fetch_data(url))
    return results
