from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tars.services.runtime import Runtime


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
        ({"agent_id": "dqn"}, 422, "episodes", "give episodes, timesteps or both"),
        ({"agent_id": "dqn", "timesteps": 0}, 422, "timesteps", "greater"),
        (
            {"agent_id": "dqn", "episodes": 1, "hyperparameters": {"learning_rat": 0.1}},
            422,
            "learning_rat",
            "no parameter",
        ),
        (
            {"agent_id": "dqn", "episodes": 1, "hyperparameters": {"learning_rate": "fast"}},
            422,
            "learning_rate",
            "number",
        ),
        ({"agent_id": "dqn", "episodes": 1, "hyperparameters": {"learning_rate": -1}}, 422, "learning_rate", "greater"),
        ({"agent_id": "dqn", "episodes": 1, "hyperparameters": {"batch_size": 3.5}}, 422, "batch_size", "integer"),
        ({"agent_id": "ppo", "episodes": 1, "hyperparameters": {"n_epochs": True}}, 422, "n_epochs", "integer"),
        ({"agent_id": "dqn", "episodes": 1, "hyperparameters": {"buffer_size": 20_000}}, 422, "buffer_size", "at most"),
        ({"agent_id": "ppo", "episodes": 1, "hyperparameters": {"n_steps": 4096}}, 422, "n_steps", "at most 10000"),
        (
            {"agent_id": "ppo", "episodes": 1, "hyperparameters": {"stats_window_size": 5000}},
            422,
            "stats_window_size",
            "1000",
        ),
        (
            {"agent_id": "ppo", "episodes": 1, "hyperparameters": {"policy_kwargs": {"net_arch": "big"}}},
            422,
            "policy_kwargs",
            "net_arch",
        ),
        ({"agent_id": "ppo", "episodes": 1, "from_run": "nope"}, 422, "from_run", "no run"),
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
