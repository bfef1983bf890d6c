"""The audit log: who did what, when, from where, for every security-relevant action, readable by
admins only, and never holding a secret."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from tests.conftest import PASSWORD


def audit_events(client: TestClient, admin: dict[str, str], **query: object) -> list[dict[str, object]]:
    response = client.get("/api/v1/audit", params=query, headers=admin)
    assert response.status_code == 200, response.text
    items: list[dict[str, object]] = response.json()["items"]
    return items


def test_security_actions_are_recorded_with_who_and_where(
    dashboard: TestClient, orchestration: TestClient, auth: dict[str, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = auth["admin"]
    assert (
        dashboard.post("/api/v1/auth/login", json={"username": "viewer-user", "password": PASSWORD}).status_code == 200
    )
    wrong = {"username": "viewer-user", "password": "not-the-password"}
    assert dashboard.post("/api/v1/auth/login", json=wrong).status_code == 401
    created = dashboard.post("/api/v1/apikeys", json={"user": "operator-user", "role": "operator"}, headers=admin)
    key = created.json()["key"]
    assert dashboard.delete(f"/api/v1/apikeys/{created.json()['id']}", headers=admin).status_code == 200
    users = {u["username"]: u["id"] for u in dashboard.get("/api/v1/users", headers=admin).json()["items"]}
    assert dashboard.patch(f"/api/v1/users/{users['viewer-user']}", json={"role": "operator"}, headers=admin).is_success
    run = orchestration.post("/api/v1/train", json={"agent_id": "dqn", "episodes": 1}, headers=auth["operator"]).json()
    assert orchestration.post(f"/api/v1/runs/{run['run_id']}/cancel", headers=auth["operator"]).is_success
    evaluation = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": 3.5}
    evaluation_id = dashboard.post("/api/v1/evaluations", json=evaluation, headers=auth["operator"]).json()["id"]
    assert dashboard.delete(f"/api/v1/evaluations/{evaluation_id}", headers=admin).status_code == 204

    events = audit_events(dashboard, admin)
    seeding = [e for e in events if e["action"] == "user.created"]  # the fixture's users, by the command line
    assert {(e["actor"], e["credential"], e["address"]) for e in seeding} == {("system", None, None)}
    events = [e for e in events if e not in seeding]
    summary = [(e["action"], e["actor"], e["target"], e["outcome"]) for e in reversed(events)]
    assert summary == [
        ("auth.login", "viewer-user", "viewer-user", "success"),
        ("auth.login", "viewer-user", "viewer-user", "failure"),
        ("apikey.created", "admin-user", created.json()["prefix"], "success"),
        ("apikey.revoked", "admin-user", created.json()["prefix"], "success"),
        ("user.role_changed", "admin-user", "viewer-user", "success"),
        ("training.started", "operator-user", run["run_id"], "success"),
        ("training.cancelled", "operator-user", run["run_id"], "success"),
        ("evaluation.deleted", "admin-user", str(evaluation_id), "success"),
    ]
    assert all(e["address"] == "testclient" and e["created_at"] for e in events)
    role_change = next(e for e in events if e["action"] == "user.role_changed")
    assert role_change["details"] == {"from": "viewer", "to": "operator"}
    deleted = next(e for e in events if e["action"] == "evaluation.deleted")
    assert deleted["details"]["reward"] == 3.5  # type: ignore[index]
    # No secret anywhere: not the password, not the key, not in the log lines either.
    everything = str(events) + caplog.text
    for secret in (PASSWORD, "not-the-password", key, key[18:]):
        assert secret not in everything
    assert dashboard.get("/api/v1/evaluations?agent_id=ppo", headers=admin).json()["items"] == []


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_the_audit_log_is_for_admins_and_filters_and_pages(
    dashboard: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    for _ in range(5):
        dashboard.post("/api/v1/auth/login", json={"username": "ghost", "password": "whatever!"})
    assert dashboard.get("/api/v1/audit", headers=auth["operator"]).status_code == 403
    assert dashboard.get("/api/v1/audit").status_code == 401
    failures = audit_events(dashboard, auth["admin"], action="auth.login", outcome="failure")
    assert len(failures) == 5 and {e["actor"] for e in failures} == {"ghost"}
    first = dashboard.get("/api/v1/audit", params={"limit": 2}, headers=auth["admin"]).json()
    second = dashboard.get(
        "/api/v1/audit", params={"limit": 2, "before_id": first["next_before_id"]}, headers=auth["admin"]
    ).json()
    ids = [e["id"] for e in first["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 4
    for bad in ({"action": "auth.nothing"}, {"since": "2026-01-01T00:00:00"}, {"limit": 0}):
        response = dashboard.get("/api/v1/audit", params=bad, headers=auth["admin"])
        assert response.status_code == 422, bad


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_users_are_managed_by_admins(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    body = {"username": "nora", "password": "long enough pw", "role": "operator"}
    assert dashboard.post("/api/v1/users", json=body, headers=auth["operator"]).status_code == 403
    created = dashboard.post("/api/v1/users", json=body, headers=auth["admin"])
    assert created.status_code == 201 and created.json()["role"] == "operator"
    assert "password" not in created.text and "hash" not in created.text
    assert dashboard.post("/api/v1/users", json=body, headers=auth["admin"]).status_code == 409
    short = dashboard.post("/api/v1/users", json={**body, "username": "x", "password": "short"}, headers=auth["admin"])
    assert short.status_code == 422 and "password" in short.text
    user_id = created.json()["id"]
    assert dashboard.patch(f"/api/v1/users/{user_id}", json={}, headers=auth["admin"]).status_code == 422
    assert dashboard.patch("/api/v1/users/999999", json={"active": False}, headers=auth["admin"]).status_code == 404
    off = dashboard.patch(f"/api/v1/users/{user_id}", json={"active": False}, headers=auth["admin"])
    assert off.status_code == 200 and off.json()["active"] is False
    login = dashboard.post("/api/v1/auth/login", json={"username": "nora", "password": "long enough pw"})
    assert login.status_code == 401
    me = {u["username"]: u["id"] for u in dashboard.get("/api/v1/users", headers=auth["admin"]).json()["items"]}
    self_demotion = dashboard.patch(f"/api/v1/users/{me['admin-user']}", json={"role": "viewer"}, headers=auth["admin"])
    assert self_demotion.status_code == 409
    actions = [(e["action"], e["outcome"]) for e in audit_events(dashboard, auth["admin"])]
    assert actions[:3] == [("auth.login", "failure"), ("user.deactivated", "success"), ("user.created", "success")]
