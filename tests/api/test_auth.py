from __future__ import annotations

import jwt
from fastapi.testclient import TestClient

from tests.conftest import PASSWORD, TEST_SECRET


def test_login_returns_a_bearer_token(dashboard: TestClient, users: dict[str, str]) -> None:
    response = dashboard.post("/api/v1/auth/login", json={"username": users["viewer"], "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0
    claims = jwt.decode(body["access_token"], TEST_SECRET, algorithms=["HS256"], audience="tars-api")
    assert claims["role"] == "viewer"


def test_wrong_password_and_unknown_user_get_the_same_answer(dashboard: TestClient, users: dict[str, str]) -> None:
    wrong = dashboard.post("/api/v1/auth/login", json={"username": users["admin"], "password": "nope-nope"})
    unknown = dashboard.post("/api/v1/auth/login", json={"username": "nobody", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


def test_routes_need_a_valid_token(dashboard: TestClient, orchestration: TestClient) -> None:
    assert dashboard.get("/api/v1/evaluations").status_code == 401
    assert dashboard.get("/api/v1/agents", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    forged = jwt.encode({"sub": "1", "role": "admin", "iss": "tars", "aud": "tars-api", "exp": 2**40}, "x" * 40)
    assert orchestration.get("/api/v1/runs", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    response = orchestration.post("/api/v1/train", json={"agent_id": "dqn", "episodes": 1})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_public_routes_need_no_token(dashboard: TestClient) -> None:
    assert dashboard.get("/health").status_code == 200
    assert dashboard.get("/metrics").status_code == 200
    assert dashboard.get("/").status_code == 200
    assert dashboard.head("/").status_code == 200  # the playbook's smoke test: curl -I
    assert dashboard.get("/static/app.js").status_code == 200


def test_viewer_cannot_train_or_submit(
    dashboard: TestClient, orchestration: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    viewer = auth["viewer"]
    assert (
        orchestration.post("/api/v1/train", json={"agent_id": "dqn", "episodes": 1}, headers=viewer).status_code == 403
    )
    body = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": 1.0}
    assert dashboard.post("/api/v1/evaluations", json=body, headers=viewer).status_code == 403
    assert orchestration.get("/api/v1/runs", headers=viewer).json()["items"] == []
    assert dashboard.get("/api/v1/evaluations", headers=viewer).json()["items"] == []
