"""Values a request schema lets through but a database cannot hold are the client's error (422)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize("backend", ["distributed"], indirect=True)
def test_a_nul_character_postgresql_cannot_store_is_a_422_not_a_500(
    dashboard: TestClient, orchestration: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    admin = auth["admin"]
    for client, method, url, body in (
        (orchestration, "GET", "/api/v1/runs?agent_id=a%00b", None),
        (dashboard, "GET", "/api/v1/apikeys?user=a%00b", None),
        (dashboard, "GET", "/api/v1/evaluations?environment=Cart%00Pole", None),
        (dashboard, "POST", "/api/v1/auth/login", {"username": "a\x00b", "password": "whatever-it-is"}),
    ):
        response = client.request(method, url, json=body, headers=admin)
        assert response.status_code == 422, (url, response.text)
        assert "NUL" in response.json()["detail"][0]["msg"]
