from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tars.runtime import Runtime


def _runs(orchestration: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = orchestration.get("/api/v1/runs", headers=headers).json()["items"]
    return items


def test_training_is_queued_for_a_worker(
    runtime: Runtime, orchestration: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    response = orchestration.post(
        "/api/v1/train", json={"agent_id": "dqn", "episodes": 10, "seed": 7}, headers=auth["operator"]
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "queued"
    run = orchestration.get(f"/api/v1/runs/{body['run_id']}", headers=auth["viewer"]).json()
    assert (run["agent_id"], run["environment"], run["episodes"], run["seed"]) == ("dqn", "CartPole-v1", 10, 7)
    assert run["episodes_done"] == 0 and run["rewards"] == [] and run["evaluation"] is None
    delivery = runtime.queue.receive("test-consumer", timeout=5)
    assert delivery is not None
    assert delivery.job.run_id == body["run_id"]
    assert delivery.job.episodes == 10
    runtime.queue.ack(delivery)


def test_environment_can_be_chosen(orchestration: TestClient, auth: dict[str, dict[str, str]]) -> None:
    response = orchestration.post(
        "/api/v1/train", json={"agent_id": "ppo", "episodes": 2, "environment": "Pendulum-v1"}, headers=auth["admin"]
    )
    assert response.status_code == 200
    run = orchestration.get(f"/api/v1/runs/{response.json()['run_id']}", headers=auth["viewer"]).json()
    assert run["environment"] == "Pendulum-v1"


@pytest.mark.parametrize(
    ("body", "status", "field", "reason"),
    [
        ({"agent_id": "ddpg", "episodes": 1, "environment": "CartPole-v1"}, 422, "environment", "continuous"),
        ({"agent_id": "dqn", "episodes": 1, "environment": "Pendulum-v1"}, 422, "environment", "discrete"),
        ({"agent_id": "dqn", "episodes": 1, "environment": "Atlantis-v9"}, 422, "environment", "unknown"),
        ({"agent_id": "dqn", "episodes": -1}, 422, "episodes", "greater"),
        ({"agent_id": "dqn", "episodes": 0}, 422, "episodes", "greater"),
        ({"agent_id": "dqn", "episodes": "10"}, 422, "episodes", "integer"),
        ({"agent_id": "dqn"}, 422, "episodes", "required"),
        ({"agent_id": "dqn", "episodes": 1, "seed": -3}, 422, "seed", "greater"),
        ({"agent_id": "dqn", "episodes": 1, "extra": True}, 422, "extra", "not permitted"),
    ],
)
def test_refused_training_requests_store_nothing(
    orchestration: TestClient,
    auth: dict[str, dict[str, str]],
    body: dict[str, Any],
    status: int,
    field: str,
    reason: str,
) -> None:
    response = orchestration.post("/api/v1/train", json=body, headers=auth["operator"])
    assert response.status_code == status
    errors = response.json()["detail"]
    assert any(e["loc"][-1] == field and reason in e["msg"].lower() for e in errors), errors
    assert _runs(orchestration, auth["viewer"]) == []


def test_unknown_agent_is_404(orchestration: TestClient, auth: dict[str, dict[str, str]]) -> None:
    response = orchestration.post("/api/v1/train", json={"agent_id": "nope", "episodes": 1}, headers=auth["operator"])
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]
    assert _runs(orchestration, auth["viewer"]) == []


def test_unknown_run_is_404(orchestration: TestClient, auth: dict[str, dict[str, str]]) -> None:
    assert orchestration.get("/api/v1/runs/does-not-exist", headers=auth["viewer"]).status_code == 404
