"""A live-feed WebSocket lasts only as long as the credential it connected with. Revoked — its user
deactivated, its API key revoked, its login session ended — on this replica or another, the server
closes it at once with 4401; expired, with 4440. Everyone else's connections stay open."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from tars.services.auth.tokens import TokenService
from tars.services.runtime import Runtime
from tars.settings import Settings
from tars.storage.users import get_user_by_username
from tests.conftest import PASSWORD, TEST_SECRET, bearer
from tests.waiting import eventually

CREDENTIALS_REVOKED, CREDENTIALS_EXPIRED = 4401, 4440
# In this process the close follows the revocation within milliseconds; another process hears of it
# over Redis pub/sub, or (embedded) finds the data directory's file changed within half a second.
IN_PROCESS_SECONDS = 1.0
ACROSS_PROCESSES_SECONDS = 2.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Frequent pings, so a test reading from a connection that stays open is never left waiting long.
    return settings.model_copy(update={"ws_ping_seconds": 0.1, "ws_pong_timeout_seconds": 5.0})


def credential(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def open_feed(client: TestClient, credential: str) -> Any:
    """A /ws connection authenticated with ``credential`` (a context manager)."""
    return client.websocket_connect(f"/ws?token={credential}")


def authenticated(ws: WebSocketTestSession) -> dict[str, Any]:
    hello: dict[str, Any] = ws.receive_json()
    assert hello["type"] == "authenticated", hello
    return hello


def closed_within(ws: WebSocketTestSession, seconds: float) -> WebSocketDisconnect:
    """How the server closes ``ws`` within ``seconds`` (its pings answered meanwhile); fails if it
    stays open."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frame = ws.receive_json()
        except WebSocketDisconnect as closed:
            return closed
        if frame["type"] == "ping":
            ws.send_json({"type": "pong"})
    raise AssertionError(f"the connection is still open {seconds} s later")


def still_open(ws: WebSocketTestSession) -> None:
    """The connection answers a ping: the server has not closed it."""
    ws.send_json({"type": "ping"})
    while (frame := ws.receive_json())["type"] != "pong":
        if frame["type"] == "ping":
            ws.send_json({"type": "pong"})


def user_id(runtime: Runtime, username: str) -> int:
    with runtime.sessions() as session:
        user = get_user_by_username(session, username)
        assert user is not None
        return user.id


def log_in(client: TestClient, username: str) -> dict[str, Any]:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def create_key(client: TestClient, admin: dict[str, str], username: str = "operator-user") -> dict[str, Any]:
    response = client.post("/api/v1/apikeys", json={"user": username, "role": "viewer"}, headers=admin)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_deactivating_a_user_closes_their_connections_and_no_one_elses(
    runtime: Runtime, dashboard: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    viewer_login = log_in(dashboard, "viewer-user")
    with (
        open_feed(dashboard, viewer_login["access_token"]) as by_login,
        open_feed(dashboard, credential(auth["viewer"])) as by_token,
        open_feed(dashboard, credential(auth["operator"])) as someone_else,
    ):
        for ws in (by_login, by_token, someone_else):
            authenticated(ws)
        deactivated = dashboard.patch(
            f"/api/v1/users/{user_id(runtime, 'viewer-user')}", json={"active": False}, headers=auth["admin"]
        )
        assert deactivated.status_code == 200, deactivated.text
        for ws in (by_login, by_token):
            closed = closed_within(ws, IN_PROCESS_SECONDS)
            assert (closed.code, closed.reason) == (CREDENTIALS_REVOKED, "this account has been deactivated")
        still_open(someone_else)
        # Events still reach the connection left open.
        someone_else.send_json({"type": "subscribe", "channel": "evaluations"})
        assert someone_else.receive_json()["type"] == "subscribed"
        body = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": 7}
        assert dashboard.post("/api/v1/evaluations", json=body, headers=auth["operator"]).status_code == 201
        while (frame := someone_else.receive_json())["type"] == "ping":
            someone_else.send_json({"type": "pong"})
        assert frame["type"] == "event" and frame["data"]["reward"] == 7.0
    # Closed connections are no longer watched: nothing is kept for them.
    eventually(lambda: runtime.security.watch.watching == 0, message="every connection to be released")


def test_revoking_an_api_key_closes_the_connections_it_opened(
    dashboard: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    created = create_key(dashboard, auth["admin"])
    with (
        open_feed(dashboard, created["key"]) as by_key,
        open_feed(dashboard, credential(auth["operator"])) as same_user_by_token,
    ):
        authenticated(by_key)
        authenticated(same_user_by_token)
        revoked = dashboard.delete(f"/api/v1/apikeys/{created['id']}", headers=auth["admin"])
        assert revoked.status_code == 200, revoked.text
        closed = closed_within(by_key, IN_PROCESS_SECONDS)
        assert (closed.code, closed.reason) == (CREDENTIALS_REVOKED, "this API key has been revoked")
        still_open(same_user_by_token)  # the key's user is not revoked: their token still works


def test_logging_out_closes_that_sessions_connections(dashboard: TestClient) -> None:
    leaving, staying = log_in(dashboard, "operator-user"), log_in(dashboard, "operator-user")
    with (
        open_feed(dashboard, leaving["access_token"]) as logged_out,
        open_feed(dashboard, staying["access_token"]) as other_session,
    ):
        authenticated(logged_out)
        authenticated(other_session)
        response = dashboard.post("/api/v1/auth/logout", json={}, headers=bearer(leaving["access_token"]))
        assert response.status_code == 204, response.text
        closed = closed_within(logged_out, IN_PROCESS_SECONDS)
        assert (closed.code, closed.reason) == (CREDENTIALS_REVOKED, "this session has ended; log in again")
        still_open(other_session)


def test_a_reused_refresh_token_closes_its_sessions_connections(dashboard: TestClient) -> None:
    stolen = log_in(dashboard, "operator-user")
    with open_feed(dashboard, stolen["access_token"]) as ws:
        authenticated(ws)
        first = dashboard.post("/api/v1/auth/refresh", json={"refresh_token": stolen["refresh_token"]})
        assert first.status_code == 200
        still_open(ws)  # a refresh is no revocation
        again = dashboard.post("/api/v1/auth/refresh", json={"refresh_token": stolen["refresh_token"]})
        assert again.status_code == 401
        assert closed_within(ws, IN_PROCESS_SECONDS).code == CREDENTIALS_REVOKED


def test_a_connection_ends_when_its_access_token_expires(runtime: Runtime, dashboard: TestClient) -> None:
    with runtime.sessions() as session:
        user = get_user_by_username(session, "viewer-user")
        assert user is not None
        short_lived = TokenService(TEST_SECRET, expires_seconds=1).issue(user).access_token
    with open_feed(dashboard, short_lived) as ws:
        authenticated(ws)
        opened = time.monotonic()
        closed = closed_within(ws, 3.0)
        assert closed.code == CREDENTIALS_EXPIRED and "expired" in closed.reason
        assert time.monotonic() - opened < 1.5  # at its expiry, not at some later check


def test_a_revocation_on_another_replica_closes_the_connection_here(
    runtime: Runtime, dashboard: TestClient, second_replica: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    created = create_key(dashboard, auth["admin"])
    with (
        open_feed(dashboard, created["key"]) as by_key,
        open_feed(dashboard, credential(auth["viewer"])) as deactivated_elsewhere,
        open_feed(dashboard, credential(auth["operator"])) as someone_else,
    ):
        for ws in (by_key, deactivated_elsewhere, someone_else):
            authenticated(ws)
        # The other replica changes the database and announces it: Redis pub/sub when distributed,
        # the data directory's file when embedded (as `tars apikeys revoke` would).
        assert second_replica.delete(f"/api/v1/apikeys/{created['id']}", headers=auth["admin"]).status_code == 200
        closed = closed_within(by_key, ACROSS_PROCESSES_SECONDS)
        assert (closed.code, closed.reason) == (CREDENTIALS_REVOKED, "this API key has been revoked")
        patched = second_replica.patch(
            f"/api/v1/users/{user_id(runtime, 'viewer-user')}", json={"active": False}, headers=auth["admin"]
        )
        assert patched.status_code == 200
        assert closed_within(deactivated_elsewhere, ACROSS_PROCESSES_SECONDS).code == CREDENTIALS_REVOKED
        still_open(someone_else)


def test_a_demoted_user_stays_connected(
    runtime: Runtime, dashboard: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    with open_feed(dashboard, credential(auth["operator"])) as ws:
        authenticated(ws)
        demoted = dashboard.patch(
            f"/api/v1/users/{user_id(runtime, 'operator-user')}", json={"role": "viewer"}, headers=auth["admin"]
        )
        assert demoted.status_code == 200
        # Checked again (the announcement concerns it), and still admitted: every role reads the feed.
        with pytest.raises(AssertionError, match="still open"):
            closed_within(ws, 0.5)
        still_open(ws)
