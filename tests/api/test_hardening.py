"""What every service does to hostile or careless requests, before any route sees them."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tars.api.applications import create_dashboard_app
from tars.services.runtime import Runtime
from tars.settings import Settings
from tars.storage.tables import UserRow
from tars.wiring.keys import jwt_signing_secret
from tests.conftest import PASSWORD

pytestmark = pytest.mark.parametrize("backend", ["embedded"], indirect=True)


def test_a_body_over_the_limit_is_refused_with_413(
    backend: str, dashboard: TestClient, auth: dict[str, dict[str, str]], settings: Settings
) -> None:
    padding = "x" * (settings.max_request_bytes + 1)
    body = f'{{"agent_id":"ppo","environment":"CartPole-v1","reward":1,"note":"{padding}"}}'
    headers = {**auth["operator"], "Content-Type": "application/json"}
    response = dashboard.post("/api/v1/evaluations", content=body, headers=headers)
    assert response.status_code == 413
    listed = dashboard.get("/api/v1/evaluations", headers=auth["viewer"]).json()["items"]
    assert listed == []


def test_unknown_fields_are_refused_by_name(
    backend: str, dashboard: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    body = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": 1, "is_admin": True}
    response = dashboard.post("/api/v1/evaluations", json=body, headers=auth["operator"])
    assert response.status_code == 422
    assert "is_admin" in response.text


def test_every_response_carries_the_security_headers(backend: str, dashboard: TestClient) -> None:
    for path in ("/health", "/", "/api/v1/runs"):
        headers = dashboard.get(path).headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "no-referrer"


def test_the_page_allows_only_its_own_scripts_and_its_import_map(backend: str, dashboard: TestClient) -> None:
    response = dashboard.get("/")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    import_map = re.search(r'<script type="importmap">(.*?)</script>', response.text, re.DOTALL)
    assert import_map is not None
    digest = base64.b64encode(hashlib.sha256(import_map.group(1).encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}'" in policy
    assert "unsafe-inline" not in policy


def preflight(client: TestClient, origin: str) -> dict[str, str]:
    response = client.options(
        "/api/v1/runs",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    return dict(response.headers)


def test_no_other_origin_may_call_by_default(backend: str, dashboard: TestClient) -> None:
    assert "access-control-allow-origin" not in preflight(dashboard, "https://elsewhere.example")


@pytest.fixture
def cors_dashboard(runtime: Runtime) -> Iterator[TestClient]:
    runtime.settings.cors_origins = ["https://ops.example"]
    with TestClient(create_dashboard_app(runtime)) as client:
        yield client


def test_configured_origins_and_only_they_may_call(backend: str, cors_dashboard: TestClient) -> None:
    assert preflight(cors_dashboard, "https://ops.example")["access-control-allow-origin"] == "https://ops.example"
    assert "access-control-allow-origin" not in preflight(cors_dashboard, "https://elsewhere.example")


def test_cors_origins_come_comma_separated_from_the_environment(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARS_CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings(jwt_secret="j" * 48).cors_origins == ["https://a.example", "https://b.example"]


def test_no_secret_or_hash_in_any_response_or_log_line(
    backend: str,
    dashboard: TestClient,
    orchestration: TestClient,
    runtime: Runtime,
    users: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with runtime.sessions() as session:
        hashes = [user.password_hash for user in session.scalars(select(UserRow))]
    secrets = [PASSWORD, jwt_signing_secret(runtime.settings), *hashes]
    seen: list[str] = []
    for client in (dashboard, orchestration):
        wrong = client.post("/api/v1/auth/login", json={"username": users["admin"], "password": PASSWORD + "x"})
        login = client.post("/api/v1/auth/login", json={"username": users["admin"], "password": PASSWORD})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        seen += [wrong.text, str(wrong.headers), login.text, str(login.headers)]
        for path in ("/api/v1/agents", "/api/v1/runs", "/health", "/metrics", "/openapi.json"):
            response = client.get(path, headers=headers)
            seen += [response.text, str(response.headers)]
    seen += [record.getMessage() for record in caplog.records]
    for secret in secrets:
        assert not any(secret in text for text in seen)
