from __future__ import annotations

import inspect
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tars.domain.hyperparameters import ALGORITHM_PARAMETERS, OWN_PARAMETERS
from tars.training.algorithms import ALGORITHM_CLASSES

CUSTOM = {
    "agent_id": "fast-ppo",
    "algorithm": "ppo",
    "environment": "Acrobot-v1",
    "hyperparameters": {"learning_rate": 0.0005, "n_steps": 128, "policy_kwargs": {"net_arch": [32, 32]}},
}


def test_parameters_we_accept_are_the_algorithms_real_ones() -> None:
    for name, params in ALGORITHM_PARAMETERS.items():
        real = set(inspect.signature(ALGORITHM_CLASSES[name].__init__).parameters)
        assert set(params) - OWN_PARAMETERS <= real, name


def test_agents_are_created_read_updated_and_deleted(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    created = dashboard.post("/api/v1/agents", json=CUSTOM, headers=auth["operator"])
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["hyperparameters"] == CUSTOM["hyperparameters"]
    # Its own settings override the tuned defaults for its environment.
    assert body["effective_hyperparameters"]["n_steps"] == 128
    assert body["effective_hyperparameters"]["n_envs"] == 16

    assert dashboard.post("/api/v1/agents", json=CUSTOM, headers=auth["operator"]).status_code == 409
    patched = dashboard.patch(
        "/api/v1/agents/fast-ppo", json={"environment": "CartPole-v1"}, headers=auth["operator"]
    ).json()
    assert patched["environment"] == "CartPole-v1" and patched["hyperparameters"] == CUSTOM["hyperparameters"]
    assert dashboard.get("/api/v1/agents/fast-ppo", headers=auth["viewer"]).json()["environment"] == "CartPole-v1"

    assert dashboard.delete("/api/v1/agents/fast-ppo", headers=auth["operator"]).status_code == 403
    assert dashboard.delete("/api/v1/agents/fast-ppo", headers=auth["admin"]).status_code == 204
    assert dashboard.get("/api/v1/agents/fast-ppo", headers=auth["viewer"]).status_code == 404


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"algorithm": "nope"}, ["algorithm"]),
        ({"environment": "Pendulum-v1", "algorithm": "dqn"}, ["environment"]),
        ({"hyperparameters": {"n_stepz": 5}}, ["hyperparameters", "n_stepz"]),
        ({"hyperparameters": {"gamma": 1.5}}, ["hyperparameters", "gamma"]),
        ({"hyperparameters": {"n_steps": "many"}}, ["hyperparameters", "n_steps"]),
        ({"hyperparameters": {"n_steps": 2000, "n_envs": 8}}, ["hyperparameters", "n_steps"]),
        ({"agent_id": "no spaces allowed"}, ["agent_id"]),
    ],
)
def test_invalid_agents_are_refused_naming_the_problem(
    dashboard: TestClient, auth: dict[str, dict[str, str]], change: dict[str, Any], path: list[str]
) -> None:
    response = dashboard.post("/api/v1/agents", json={**CUSTOM, **change}, headers=auth["operator"])
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][1:] == path, response.json()
    assert dashboard.get("/api/v1/agents/fast-ppo", headers=auth["viewer"]).status_code == 404


def test_invalid_updates_change_nothing(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    dashboard.post("/api/v1/agents", json=CUSTOM, headers=auth["operator"])
    bad = dashboard.patch(
        "/api/v1/agents/fast-ppo", json={"hyperparameters": {"buffer_size": 5}}, headers=auth["operator"]
    )
    assert bad.status_code == 422
    assert (
        dashboard.get("/api/v1/agents/fast-ppo", headers=auth["viewer"]).json()["hyperparameters"]
        == (CUSTOM["hyperparameters"])
    )


def test_deleting_an_agent_with_active_runs_is_refused(
    dashboard: TestClient, orchestration: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    dashboard.post("/api/v1/agents", json=CUSTOM, headers=auth["operator"])
    queued = orchestration.post("/api/v1/train", json={"agent_id": "fast-ppo", "episodes": 1}, headers=auth["operator"])
    assert queued.status_code == 200
    refused = dashboard.delete("/api/v1/agents/fast-ppo", headers=auth["admin"])
    assert refused.status_code == 409 and "cancel" in refused.json()["detail"]
    orchestration.post(f"/api/v1/runs/{queued.json()['run_id']}/cancel", headers=auth["operator"])
    assert dashboard.delete("/api/v1/agents/fast-ppo", headers=auth["admin"]).status_code == 204


def test_environments_list_what_trains_with_what(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    items = {e["environment"]: e for e in dashboard.get("/api/v1/environments", headers=auth["viewer"]).json()["items"]}
    assert set(items) == {"CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Pendulum-v1", "MountainCarContinuous-v0"}
    assert items["CartPole-v1"]["action_space"] == "discrete"
    assert set(items["CartPole-v1"]["algorithms"]) == {"dqn", "a2c", "ppo"}
    assert set(items["Pendulum-v1"]["algorithms"]) == {"a2c", "ppo", "ddpg", "td3", "sac"}
