"""Seed example "Running Tasks Concurrently with Submit" (only the import lines differ from Prefect's)."""
import time

from distributary import flow, task
from distributary.futures import wait


@task
def process_item(item: int) -> int:
    time.sleep(1)
    return item * 2


@flow
def parallel_processing():
    items = list(range(10))
    futures = [process_item.submit(item) for item in items]

    # Wait for all futures to complete
    done, not_done = wait(futures)

    # Get results
    results = [future.result() for future in done]
    print(f"Processed {len(results)} items: {results}")
    return results


if __name__ == "__main__":
    parallel_processing()
