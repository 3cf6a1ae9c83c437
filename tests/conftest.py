"""Test-wide setup: environment defaults that must be in place before gcsfs or ray are imported, the
storage server fixtures from tests/servers.py (moto, SeaweedFS, fake-gcs-server, Azurite), and the session's one
Dask cluster and one Ray instance (tests/runners/dask_servers.py, ray_servers.py), defined here once so that
every folder (runners, workers) shares them: a session fixture imported by two conftests would start twice."""
from __future__ import annotations

import os

# Before any gcsfs import: its HNS probe hangs ~60 s per operation against emulators (tests/README.md, P3).
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
# Ray on loopback, no token file in ~/.ray, no usage reporting (tests/README.md, P9).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Flows record themselves in the run store under DISTRIBUTARY_HOME: the suite's runs go to a home of its own,
# never into the user's ~/.distributary.
if "DISTRIBUTARY_HOME" not in os.environ:
    import tempfile

    os.environ["DISTRIBUTARY_HOME"] = tempfile.mkdtemp(prefix="distributary-tests-home-")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from servers import azurite, fake_gcs, moto_s3, seaweed_s3, server_workdir  # noqa: E402,F401

sys.path.insert(0, str(Path(__file__).parent / "runners"))
from dask_servers import dask_processes  # noqa: E402,F401
from ray_servers import ray_instance  # noqa: E402,F401


@pytest.fixture
def run_home(tmp_path, monkeypatch):
    """A fresh DISTRIBUTARY_HOME (so a fresh embedded run store) for one test; the run-store sink and the
    cached database engines are reset before and after."""
    from distributary import runstore
    from distributary.runstore import storage

    runstore.stop_sink()
    storage.reset()
    home = tmp_path / "home"
    monkeypatch.setenv("DISTRIBUTARY_HOME", str(home))
    monkeypatch.delenv("DISTRIBUTARY_API_DATABASE_CONNECTION_URL", raising=False)
    yield home
    runstore.stop_sink()
    storage.reset()
