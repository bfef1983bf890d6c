"""Login sessions: access tokens are short-lived, refresh tokens rotate on use, a reused refresh
token ends its whole family, and a logged-out session's tokens are refused everywhere."""

from __future__ import annotations

import jwt
import pytest
from fastapi.testclient import TestClient

from tars.services.runtime import Runtime
from tests.conftest import PASSWORD, TEST_SECRET, bearer
from tests.waiting import eventually


def log_in(client: TestClient, username: str = "operator-user") -> dict[str, object]:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def refresh(client: TestClient, token: object) -> tuple[int, dict[str, object]]:
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": token})
    return response.status_code, response.json()


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_login_gives_a_short_lived_access_token_and_a_refresh_token(dashboard: TestClient) -> None:
    body = log_in(dashboard)
    assert body["expires_in"] == 900  # 15 minutes by default
    assert int(str(body["refresh_expires_in"])) > 86400
    claims = jwt.decode(str(body["access_token"]), TEST_SECRET, algorithms=["HS256"], audience="tars-api")
    assert claims["exp"] - claims["iat"] == 900 and claims["sid"]
    assert dashboard.get("/api/v1/runs", headers=bearer(body["access_token"])).status_code == 200


def test_a_refresh_token_rotates_and_works_once(dashboard: TestClient) -> None:
    first = log_in(dashboard)
    status, second = refresh(dashboard, first["refresh_token"])
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    assert dashboard.get("/api/v1/runs", headers=bearer(second["access_token"])).status_code == 200
    status, third = refresh(dashboard, second["refresh_token"])
    assert status == 200
    # Both sides still hold a working pair until someone replays an old token.
    assert dashboard.get("/api/v1/runs", headers=bearer(third["access_token"])).status_code == 200


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(
    dashboard: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    stolen = log_in(dashboard)
    status, owner = refresh(dashboard, stolen["refresh_token"])  # the owner rotates it first
    assert status == 200
    status, answer = refresh(dashboard, stolen["refresh_token"])  # the thief replays the old one
    assert status == 401 and "used before" in str(answer["detail"])
    # Every token of the family is dead now: the current refresh token and the access tokens.
    assert refresh(dashboard, owner["refresh_token"])[0] == 401
    for token in (owner["access_token"], stolen["access_token"]):
        assert dashboard.get("/api/v1/runs", headers=bearer(token)).status_code == 401
    # Another login of the same user is a different session and goes on.
    other = log_in(dashboard)
    assert dashboard.get("/api/v1/runs", headers=bearer(other["access_token"])).status_code == 200
    events = dashboard.get("/api/v1/audit?action=auth.refresh_reused", headers=auth["admin"]).json()["items"]
    assert [(e["actor"], e["outcome"]) for e in events] == [("operator-user", "failure")]


def test_logout_revokes_the_session_on_every_replica(dashboard: TestClient, second_replica: TestClient) -> None:
    body = log_in(dashboard)
    assert second_replica.get("/api/v1/runs", headers=bearer(body["access_token"])).status_code == 200  # cached
    response = dashboard.post("/api/v1/auth/logout", json={}, headers=bearer(body["access_token"]))
    assert response.status_code == 204
    assert dashboard.get("/api/v1/runs", headers=bearer(body["access_token"])).status_code == 401
    eventually(
        lambda: second_replica.get("/api/v1/runs", headers=bearer(body["access_token"])).status_code != 200,
        0.5,
        interval=0.005,
        message="the second replica to refuse a logged-out token",
    )
    assert refresh(second_replica, body["refresh_token"])[0] == 401


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_bad_refresh_tokens_are_refused_without_detail(dashboard: TestClient) -> None:
    body = log_in(dashboard)
    token = str(body["refresh_token"])
    for candidate in (token[:-2] + "xx", "rt.0123456789abcdef0123456789abcdef.secret", "nonsense", token + "."):
        status, answer = refresh(dashboard, candidate)
        assert status == 401, candidate
        assert candidate not in str(answer)
    assert dashboard.post("/api/v1/auth/refresh", json={"refresh_token": token, "more": 1}).status_code == 422


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_an_api_key_has_no_session_to_log_out(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    created = dashboard.post("/api/v1/apikeys", json={"user": "viewer-user", "role": "viewer"}, headers=auth["admin"])
    response = dashboard.post("/api/v1/auth/logout", json={}, headers=bearer(created.json()["key"]))
    assert response.status_code == 422 and "revoked, not logged out" in response.text
    assert dashboard.post("/api/v1/auth/logout", json={}).status_code == 401


def test_a_demoted_user_loses_the_role_at_once(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    body = log_in(dashboard, "operator-user")
    evaluation = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": 1.0}
    headers = bearer(body["access_token"])
    assert dashboard.post("/api/v1/evaluations", json=evaluation, headers=headers).status_code == 201
    users = {u["username"]: u["id"] for u in dashboard.get("/api/v1/users", headers=auth["admin"]).json()["items"]}
    patch = dashboard.patch(f"/api/v1/users/{users['operator-user']}", json={"role": "viewer"}, headers=auth["admin"])
    assert patch.status_code == 200 and patch.json()["role"] == "viewer"
    # The token still says operator; the server goes by what the user is now.
    assert dashboard.post("/api/v1/evaluations", json=evaluation, headers=headers).status_code == 403
    assert dashboard.get("/api/v1/evaluations", headers=headers).status_code == 200


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_ended_sessions_do_not_pile_up(dashboard: TestClient, runtime: Runtime) -> None:
    from sqlalchemy import func, select

    from tars.storage.tables import AuthSessionRow, RefreshTokenRow

    for _ in range(3):
        body = log_in(dashboard)
        refresh(dashboard, body["refresh_token"])
        assert dashboard.post("/api/v1/auth/logout", json={}, headers=bearer(body["access_token"])).status_code == 204
    live = log_in(dashboard)
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuthSessionRow)) == 1
        assert session.scalar(select(func.count()).select_from(RefreshTokenRow)) == 1
    assert dashboard.get("/api/v1/runs", headers=bearer(live["access_token"])).status_code == 200
