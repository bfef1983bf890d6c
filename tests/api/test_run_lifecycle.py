"""Runs through the API with a real worker: checkpoints, continuing, cancelling, evaluating."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tars.worker.loop import Worker
from tests.waiting import eventually


def wait(client: TestClient, headers: dict[str, str], run_id: str, timeout: float = 60) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
        return run if run["status"] in ("succeeded", "failed", "cancelled") else None

    return eventually(finished, timeout, interval=0.1, message=f"run {run_id} to finish")


def train(client: TestClient, headers: dict[str, str], **body: Any) -> str:
    response = client.post("/api/v1/train", json=body, headers=headers)
    assert response.status_code == 200, response.text
    run_id: str = response.json()["run_id"]
    return run_id


def test_checkpoint_download_continue_and_evaluate(
    orchestration: TestClient, dashboard: TestClient, auth: dict[str, dict[str, str]], worker: Worker
) -> None:
    operator, viewer = auth["operator"], auth["viewer"]
    first = wait(orchestration, viewer, train(orchestration, operator, agent_id="ppo", episodes=3, seed=1))
    assert first["status"] == "succeeded" and first["has_model"]
    assert first["metrics"]["steps_per_second"] > 0
    assert set(first["evaluation"]) == {"episodes", "mean_reward", "std_reward", "min_reward", "max_reward",
                                        "mean_length"}  # fmt: skip

    model = orchestration.get(f"/api/v1/runs/{first['run_id']}/model", headers=viewer)
    assert model.status_code == 200 and model.headers["content-type"] == "application/zip"
    assert "policy.pth" in zipfile.ZipFile(io.BytesIO(model.content)).namelist()

    resumed_id = train(orchestration, operator, agent_id="ppo", timesteps=512, from_run=first["run_id"])
    resumed = wait(orchestration, viewer, resumed_id)
    assert resumed["status"] == "succeeded" and resumed["source_run_id"] == first["run_id"]
    assert resumed["timesteps_done"] > first["timesteps_done"]

    evaluated = orchestration.post("/api/v1/evaluate", json={"agent_id": "ppo", "episodes": 4}, headers=operator)
    assert evaluated.status_code == 200
    run = wait(orchestration, viewer, evaluated.json()["run_id"])
    assert (run["kind"], run["status"], run["source_run_id"]) == ("evaluate", "succeeded", resumed_id)
    assert run["episodes_done"] == 0 and not run["has_model"]
    stored = dashboard.get("/api/v1/evaluations", params={"run_id": run["run_id"]}, headers=viewer).json()["items"]
    assert len(stored) == 4 and {e["agent_id"] for e in stored} == {"ppo"}

    by_run = orchestration.post("/api/v1/evaluate", json={"run_id": first["run_id"], "episodes": 2}, headers=operator)
    assert wait(orchestration, viewer, by_run.json()["run_id"])["evaluation"]["episodes"] == 2


def test_refused_continuations_and_evaluations(
    orchestration: TestClient, auth: dict[str, dict[str, str]], worker: Worker
) -> None:
    operator, viewer = auth["operator"], auth["viewer"]
    ppo = wait(orchestration, viewer, train(orchestration, operator, agent_id="ppo", episodes=1))
    cases = [
        ("/api/v1/train", {"agent_id": "a2c", "episodes": 1, "from_run": ppo["run_id"]}, "from_run", "trained ppo"),
        ("/api/v1/train", {"agent_id": "ppo", "episodes": 1, "environment": "Acrobot-v1", "from_run": ppo["run_id"]},
         "from_run", "on CartPole-v1"),
        ("/api/v1/evaluate", {"agent_id": "dqn"}, "agent_id", "no trained model"),
        ("/api/v1/evaluate", {"episodes": 3}, "run_id", "exactly one"),
        ("/api/v1/evaluate", {"run_id": "missing"}, "run_id", "no run"),
        ("/api/v1/evaluate", {"run_id": ppo["run_id"], "episodes": 0}, "episodes", "greater"),
    ]  # fmt: skip
    for path, body, field, reason in cases:
        response = orchestration.post(path, json=body, headers=operator)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["detail"][0]
        assert error["loc"][-1] == field and reason in error["msg"], (body, error)
    runs = orchestration.get("/api/v1/runs", headers=viewer).json()["items"]
    assert [r["run_id"] for r in runs] == [ppo["run_id"]]


def test_cancelling(orchestration: TestClient, auth: dict[str, dict[str, str]], worker: Worker) -> None:
    operator, viewer = auth["operator"], auth["viewer"]
    run_id = train(orchestration, operator, agent_id="dqn", episodes=100_000)
    eventually(
        lambda: orchestration.get(f"/api/v1/runs/{run_id}", headers=viewer).json()["episodes_done"] >= 1,
        30,
        interval=0.1,
        message="the first episode",
    )
    assert orchestration.post(f"/api/v1/runs/{run_id}/cancel", headers=viewer).status_code == 403
    response = orchestration.post(f"/api/v1/runs/{run_id}/cancel", headers=operator)
    assert response.status_code == 200 and response.json()["cancel_requested"]
    assert wait(orchestration, viewer, run_id, timeout=15)["status"] == "cancelled"
    again = orchestration.post(f"/api/v1/runs/{run_id}/cancel", headers=operator)
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
    assert orchestration.post("/api/v1/runs/nope/cancel", headers=operator).status_code == 404
    assert orchestration.get(f"/api/v1/runs/{run_id}/model", headers=viewer).status_code == 404


def test_orchestration_health_lists_live_workers(
    orchestration: TestClient, dashboard: TestClient, worker: Worker
) -> None:
    eventually(lambda: orchestration.get("/health").json().get("workers"), 5, message="a live worker in /health")
    [listed] = orchestration.get("/health").json()["workers"]
    assert listed["name"] == worker.name and listed["state"] == "running" and listed["rss_bytes"] > 0
    assert "workers" not in dashboard.get("/health").json()
    text = orchestration.get("/metrics").text
    # Labelled with the families it trains, which the PPO memory alert selects on.
    families = ",".join(sorted(listed["algorithms"]))
    assert f'tars_worker_rss_bytes{{algorithms="{families}",worker="{worker.name}"}}' in text


@pytest.mark.parametrize("agent_id", ["dqn", "a2c", "ppo", "ddpg"])
def test_every_builtin_agent_trains_and_evaluates(
    agent_id: str, orchestration: TestClient, auth: dict[str, dict[str, str]], worker: Worker
) -> None:
    run = wait(orchestration, auth["viewer"], train(orchestration, auth["operator"], agent_id=agent_id, episodes=2))
    assert run["status"] == "succeeded", run["error"]
    assert run["episodes_done"] == 2 and len(run["rewards"]) == 2 and run["has_model"]
    assert run["evaluation"]["episodes"] == 3
