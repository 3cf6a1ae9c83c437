"""One Ray instance per test session, in the test process: `ray.init` with 2 CPUs, a custom resource ("gadget")
for the remote_options tests, no dashboard, a 512 MiB object store, on 127.0.0.1 (tests/README.md, P9).
Runners join it by address, so no test starts or stops Ray. Never `ray stop` (it ends every Ray on the machine).
"""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Before Ray starts: no token file in ~/.ray, no usage stats, bind 127.0.0.1 (tests/README.md, P9).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

RAY_CPUS = 2
GADGETS = 2


@pytest.fixture(scope="session")
def ray_instance() -> Iterator[str]:
    """The GCS address of the session's Ray instance."""
    import ray

    if ray.is_initialized():
        pytest.fail("Ray was already initialized in the test process before the session fixture ran.",
                    pytrace=False)
    ray.init(num_cpus=RAY_CPUS, resources={"gadget": GADGETS}, include_dashboard=False,
             object_store_memory=512 * 2**20, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def ray_runner(ray_instance: str):
    from distributary.runners.ray import RayTaskRunner

    return RayTaskRunner(address=ray_instance)
