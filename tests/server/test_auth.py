"""Basic auth (DISTRIBUTARY_SERVER_API_AUTH_STRING): every API and UI request without the credentials gets 401
with a challenge a browser answers; clients send DISTRIBUTARY_API_AUTH_STRING."""
from __future__ import annotations

import subprocess
import sys

import httpx
import pytest


@pytest.fixture
def secured(start_server):
    return start_server(env={"DISTRIBUTARY_SERVER_API_AUTH_STRING": "alice:s3cret"})


@pytest.mark.parametrize("path", ["/api/health", "/api/flow_runs/filter", "/", "/docs"])
def test_requests_without_credentials_are_refused(secured, path):
    r = httpx.request("POST" if path.endswith("filter") else "GET", secured.url + path, json={})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic")


def test_wrong_credentials_are_refused_and_right_ones_accepted(secured):
    assert httpx.get(f"{secured.api_url}/health", auth=("alice", "wrong")).status_code == 401
    assert httpx.get(f"{secured.api_url}/health", auth=("alice", "s3cret")).json() is True


def test_clients_with_the_auth_string_record_and_read(secured):
    secured.run_flow("""
        from distributary import flow

        @flow(name="behind-auth")
        def behind_auth():
            return 1

        behind_auth()
    """)
    with secured.http() as http:
        assert [f["name"] for f in http.post("flows/filter", json={}).json()] == ["behind-auth"]
    assert "behind-auth" in secured.cli("flow", "ls").stdout


def test_a_client_without_the_auth_string_is_told_what_to_set(secured):
    env = secured.client_env()
    env.pop("DISTRIBUTARY_API_AUTH_STRING")
    r = subprocess.run([sys.executable, "-m", "distributary", "flow-run", "ls"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "DISTRIBUTARY_API_AUTH_STRING" in r.stderr


def test_cors_allows_only_the_configured_origins(start_server):
    srv = start_server(env={"DISTRIBUTARY_SERVER_CORS_ALLOWED_ORIGINS": "https://ok.example"})
    pre = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = httpx.options(f"{srv.api_url}/flow_runs/filter", headers={"Origin": "https://ok.example", **pre})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://ok.example"
    other = httpx.options(f"{srv.api_url}/flow_runs/filter", headers={"Origin": "https://evil.example", **pre})
    assert "access-control-allow-origin" not in other.headers
