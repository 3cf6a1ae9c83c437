"""Worker-test fixtures: the real Dask processes and Ray instance of tests/runners (for the dask and ray workers)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "runners"))
from dask_servers import dask_processes  # noqa: E402,F401
from ray_servers import ray_instance  # noqa: E402,F401
