"""API keys through their whole life: created and shown once, stored as a hash, used by machines,
refused at once on every replica when revoked or expired, and their last use recorded."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from tars.api.applications import create_dashboard_app
from tars.services.runtime import Runtime
from tars.storage.tables import ApiKeyRow
from tars.storage.types import utcnow
from tests.conftest import bearer
from tests.waiting import eventually


def create_key(client: TestClient, admin: dict[str, str], **body: object) -> dict[str, object]:
    response = client.post("/api/v1/apikeys", json={"user": "operator-user", "role": "operator", **body}, headers=admin)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


def test_a_key_is_shown_once_and_stored_only_as_a_hash(
    dashboard: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]]
) -> None:
    created = create_key(dashboard, auth["admin"], name="ci pipeline", expires_in="30d")
    key = str(created["key"])
    prefix, secret = key[:17], key[18:]
    assert prefix == created["prefix"] and prefix.startswith("tars_") and key[17] == "_"
    assert len(secret) >= 43  # 32 random bytes, base64url
    listed = dashboard.get("/api/v1/apikeys", headers=auth["admin"]).json()["items"]
    assert [item["prefix"] for item in listed] == [prefix]
    assert all("key" not in item and "hash" not in str(item) for item in listed)
    with runtime.sessions() as session:
        row = session.scalars(select(ApiKeyRow)).one()
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest() and secret not in row.key_hash
    assert row.expires_at is not None and timedelta(days=29) < row.expires_at - utcnow() <= timedelta(days=30)


def test_a_key_authenticates_with_its_role_in_either_header(
    dashboard: TestClient, orchestration: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    viewer_key = create_key(dashboard, auth["admin"], role="viewer")["key"]
    operator_key = create_key(dashboard, auth["admin"])["key"]
    assert orchestration.get("/api/v1/runs", headers=bearer(viewer_key)).status_code == 200
    assert orchestration.get("/api/v1/runs", headers={"X-API-Key": str(viewer_key)}).status_code == 200
    body = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": 1.0}
    assert dashboard.post("/api/v1/evaluations", json=body, headers=bearer(viewer_key)).status_code == 403
    assert dashboard.post("/api/v1/evaluations", json=body, headers=bearer(operator_key)).status_code == 201
    assert dashboard.get("/api/v1/apikeys", headers=bearer(operator_key)).status_code == 403


def test_a_wrong_or_malformed_key_is_refused(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    key = str(create_key(dashboard, auth["admin"])["key"])
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")  # the right prefix, a wrong secret
    for credential in (forged, key[:-1], "tars_", "tars_nothex00000_" + "x" * 43):
        response = dashboard.get("/api/v1/agents", headers=bearer(credential))
        assert response.status_code == 401, credential
        assert credential not in response.text


def test_a_key_cannot_outrank_its_user(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    response = dashboard.post("/api/v1/apikeys", json={"user": "viewer-user", "role": "admin"}, headers=auth["admin"])
    assert response.status_code == 422
    assert "cannot have more than its user" in response.text
    for body, field in (
        ({"user": "nobody", "role": "viewer"}, "user"),
        ({"user": "viewer-user", "role": "viewer", "expires_in": "soon"}, "expires_in"),
        ({"user": "viewer-user", "role": "viewer", "extra": 1}, "extra"),
    ):
        response = dashboard.post("/api/v1/apikeys", json=body, headers=auth["admin"])
        assert response.status_code == 422 and field in response.text, response.text


def test_an_expired_key_is_refused(dashboard: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]]) -> None:
    created = create_key(dashboard, auth["admin"], expires_in="1h")
    assert dashboard.get("/api/v1/agents", headers=bearer(created["key"])).status_code == 200  # now cached
    with runtime.sessions() as session, session.begin():
        row = session.get(ApiKeyRow, created["id"])
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
    runtime.security.authenticator.forget(f"key:{created['prefix']}")  # what a change of expiry would announce
    response = dashboard.get("/api/v1/agents", headers=bearer(created["key"]))
    assert response.status_code == 401 and "expired" in response.json()["detail"]


def test_a_revoked_key_is_refused_at_once_on_every_replica(
    dashboard: TestClient, second_replica: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    created = create_key(dashboard, auth["admin"])
    for client in (dashboard, second_replica):  # both replicas have the key cached
        for _ in range(3):
            assert client.get("/api/v1/runs", headers=bearer(created["key"])).status_code == 200
    revoked = dashboard.delete(f"/api/v1/apikeys/{created['id']}", headers=auth["admin"])
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert dashboard.get("/api/v1/runs", headers=bearer(created["key"])).status_code == 401
    # The other replica hears of it over Redis pub/sub (embedded: the data directory) within milliseconds.
    eventually(
        lambda: second_replica.get("/api/v1/runs", headers=bearer(created["key"])).status_code != 200,
        0.5,
        interval=0.005,
        message="the second replica to refuse a revoked key",
    )
    assert second_replica.get("/api/v1/runs", headers=bearer(created["key"])).status_code == 401
    again = dashboard.delete(f"/api/v1/apikeys/{created['id']}", headers=auth["admin"])
    assert again.status_code == 409
    listed = dashboard.get("/api/v1/apikeys?include_revoked=true", headers=auth["admin"]).json()["items"]
    assert [item["revoked_at"] is not None for item in listed] == [True]
    assert dashboard.get("/api/v1/apikeys", headers=auth["admin"]).json()["items"] == []


def test_deactivating_the_user_stops_their_keys_everywhere(
    dashboard: TestClient, second_replica: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    created = create_key(dashboard, auth["admin"])
    assert second_replica.get("/api/v1/runs", headers=bearer(created["key"])).status_code == 200
    patched = dashboard.patch(f"/api/v1/users/{created['user_id']}", json={"active": False}, headers=auth["admin"])
    assert patched.status_code == 200
    eventually(
        lambda: second_replica.get("/api/v1/runs", headers=bearer(created["key"])).status_code != 200,
        0.5,
        interval=0.005,
        message="the second replica to refuse a deactivated user's key",
    )


def test_last_use_is_recorded_in_batches_not_per_request(
    dashboard: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]]
) -> None:
    created = create_key(dashboard, auth["admin"])
    before = utcnow()
    for _ in range(5):
        assert dashboard.get("/api/v1/agents", headers=bearer(created["key"])).status_code == 200
    with runtime.sessions() as session:
        assert session.get(ApiKeyRow, created["id"]).last_used_at is None  # type: ignore[union-attr]
    runtime.security.authenticator.flush_last_use()  # what the flusher does every api_key_last_used_flush_seconds
    listed = dashboard.get("/api/v1/apikeys", headers=auth["admin"]).json()["items"]
    assert listed[0]["last_used_at"] is not None and listed[0]["last_used_at"] >= before.isoformat()[:19]


def test_two_services_of_one_process_share_the_flusher(runtime: Runtime) -> None:
    # Embedded, both apps hand requests to one authenticator: one cache, one batch of last uses.
    assert create_dashboard_app(runtime).state.runtime.security.authenticator is runtime.security.authenticator
