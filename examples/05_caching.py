"""Seed example "Task Caching with Cache Policies" (only the import lines differ from Prefect's).

Run it twice: the second process gets every result from the cache in DISTRIBUTARY_HOME/storage."""
from datetime import timedelta

from distributary import flow, task
from distributary.cache_policies import INPUTS, TASK_SOURCE


@task(
    cache_policy=TASK_SOURCE + INPUTS,
    cache_expiration=timedelta(hours=1)
)
def expensive_computation(x: int, y: int) -> int:
    print(f"Computing {x} + {y}...")
    return x + y


# Ignore specific parameters in cache key
custom_policy = INPUTS - "debug"


@task(cache_policy=custom_policy)
def fetch_with_debug(url: str, debug: bool = False) -> dict:
    print(f"Fetching {url}...")
    return {"url": url, "data": "sample"}


@flow
def cached_workflow():
    # First call computes and caches
    result1 = expensive_computation(1, 2)

    # Second call with same inputs returns cached result
    result2 = expensive_computation(1, 2)

    # debug parameter is ignored in cache key
    data1 = fetch_with_debug("https://api.example.com", debug=False)
    data2 = fetch_with_debug("https://api.example.com", debug=True)  # Still cached
    assert data1 == data2

    return result1, result2


if __name__ == "__main__":
    cached_workflow()
