"""Basic auth (DISTRIBUTARY_SERVER_API_AUTH_STRING): every API and UI request without the credentials gets 401
with a challenge a browser answers; clients send DISTRIBUTARY_API_AUTH_STRING."""
from __future__ import annotations

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
