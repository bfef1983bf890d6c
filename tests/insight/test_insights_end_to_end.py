"""The whole path, in both modes: a regression in evaluations POSTed as batches through the dashboard
API becomes an insight record — on the insights API and the live feed — through a replica wired as a
deployment wires it (its observations to the insight service), and clears when rewards come back."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from tars.services.runtime import Runtime
from tests.insight.conftest import post_batch
from tests.insight.test_engine import items
from tests.waiting import eventually


def regressions(dashboard: TestClient, viewer: dict[str, str], state: str) -> list[dict[str, Any]]:
    query = f"/api/v1/insights?kind=reward_regression&agent_id=ppo&state={state}"
    response = dashboard.get(query, headers=viewer)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


def test_a_regression_posted_through_the_api_opens_an_insight_on_the_api_and_the_live_feed(
    runtime: Runtime, dashboard: TestClient, auth: dict[str, dict[str, str]], replicas: Any
) -> None:
    replica = replicas("deployed", runtime.insights)  # the sink tars.wiring.insight gives every replica
    eventually(lambda: replica.owns({"ppo"}), message="the replica to own ppo")
    token = auth["viewer"]["Authorization"].removeprefix("Bearer ")
    with dashboard.websocket_connect(f"/ws?token={token}") as ws:
        assert ws.receive_json()["type"] == "authenticated"
        ws.send_json({"type": "subscribe", "channel": "insights"})
        assert ws.receive_json()["type"] == "subscribed"
        rng = np.random.default_rng(11)
        post_batch(dashboard, auth["operator"], items("ppo", rng.normal(400, 40, 400), "eu-west-1"))
        for _ in range(4):  # a 40 % drop
            post_batch(dashboard, auth["operator"], items("ppo", rng.normal(240, 40, 50), "eu-west-1"))
        [insight] = eventually(
            lambda: regressions(dashboard, auth["viewer"], "open"), 20, message="an open reward regression"
        )
        assert (insight["agent_id"], insight["environment"], insight["region"]) == ("ppo", "CartPole-v1", "eu-west-1")
        assert insight["severity"] in ("warning", "critical") and insight["recommendation"]["action"]
        frame = ws.receive_json()
        while frame.get("event") != "insight.opened":
            frame = ws.receive_json()
        assert frame["channel"] == "insights" and frame["data"]["id"] == insight["id"]
    # Rewards back at their level: the insight resolves by itself.
    for _ in range(8):
        post_batch(dashboard, auth["operator"], items("ppo", rng.normal(400, 40, 50), "eu-west-1"))
    resolved = eventually(
        lambda: regressions(dashboard, auth["viewer"], "resolved"), 20, message="the regression to resolve"
    )
    assert [found["id"] for found in resolved] == [insight["id"]]
    assert regressions(dashboard, auth["viewer"], "active") == []
