"""The `store_url` fixture: one fresh, empty result store location per test, on every backend (local folder,
memory://, S3 on moto, S3 on SeaweedFS, GCS on fake-gcs-server, Azure on Azurite). The store contract suite runs
once per backend."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

STORE_KINDS = ["local", "memory", "s3", "seaweed", "gcs", "azure"]
WORKER = Path(__file__).with_name("store_worker.py")


@dataclass
class StoreTarget:
    """Where a test's store lives: its URL, explicit storage options, and the environment a subprocess needs
    to reach it without those options (as a worker with its own credentials would)."""

    kind: str
    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def store(self) -> Any:
        from distributary.results import resolve_store

        return resolve_store(self.url, self.storage_options or None)

    def subprocess_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}


def _bucket() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"  # 3..63 lowercase characters, valid on S3, GCS and Azure


def _fresh_bucket(protocol: str, options: dict[str, Any], bucket: str) -> None:
    import fsspec

    fsspec.filesystem(protocol, skip_instance_cache=True, **options).mkdir(bucket)


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> StoreTarget:
    kind = request.param
    if kind == "local":
        return StoreTarget(kind, str(tmp_path / "store"))
    if kind == "memory":
        return StoreTarget(kind, f"memory://{uuid.uuid4().hex}/results")
    bucket = _bucket()
    if kind in ("s3", "seaweed"):
        server = request.getfixturevalue("moto_s3" if kind == "s3" else "seaweed_s3")
        _fresh_bucket("s3", server.storage_options, bucket)
        return StoreTarget(kind, f"s3://{bucket}/results", server.storage_options, server.env)
    if kind == "gcs":
        server = request.getfixturevalue("fake_gcs")
        _fresh_bucket("gs", server.storage_options, bucket)
        return StoreTarget(kind, f"gs://{bucket}/results", server.storage_options, server.env)
    server = request.getfixturevalue("azurite")
    _fresh_bucket("abfs", server.storage_options, bucket)
    return StoreTarget(kind, f"az://{bucket}/results", server.storage_options, server.env)


def run_worker(target: StoreTarget, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run tests/results/store_worker.py in a fresh interpreter with the target's environment."""
    return subprocess.run([sys.executable, str(WORKER), *args], env=target.subprocess_env(), capture_output=True,
                          text=True, timeout=timeout)
