from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def test_subscribers_receive_new_evaluations_live(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    with dashboard.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": _token(auth["viewer"])})
        assert ws.receive_json()["type"] == "authenticated"
        ws.send_json({"type": "subscribe", "channel": "evaluations"})
        assert ws.receive_json() == {"type": "subscribed", "channel": "evaluations"}
        body = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": 150}
        created = dashboard.post("/api/v1/evaluations", json=body, headers=auth["operator"]).json()
        frame = ws.receive_json()
        assert frame["type"] == "event" and frame["channel"] == "evaluations"
        assert frame["event"] == "evaluation.created"
        assert frame["data"]["id"] == created["id"] and frame["data"]["reward"] == 150.0


def test_agent_channel_gets_only_that_agent(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    with dashboard.websocket_connect(f"/ws?token={_token(auth['viewer'])}") as ws:
        assert ws.receive_json()["type"] == "authenticated"
        ws.send_json({"type": "subscribe", "channel": "agent:a2c"})
        assert ws.receive_json()["type"] == "subscribed"
        for agent in ("ppo", "a2c"):
            body = {"agent_id": agent, "environment": "CartPole-v1", "reward": 1}
            assert dashboard.post("/api/v1/evaluations", json=body, headers=auth["operator"]).status_code == 201
        frame = ws.receive_json()
        assert frame["channel"] == "agent:a2c" and frame["data"]["agent_id"] == "a2c"


def test_bad_frames_get_an_error_and_the_connection_stays_usable(
    dashboard: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    with dashboard.websocket_connect(f"/ws?token={_token(auth['viewer'])}") as ws:
        assert ws.receive_json()["type"] == "authenticated"
        ws.send_text("not json")
        assert ws.receive_json() == {"type": "error", "message": "frames must be JSON objects"}
        ws.send_json({"type": "subscribe", "channel": "secrets"})
        assert ws.receive_json()["type"] == "error"
        ws.send_json({"type": "dance"})
        assert "dance" in ws.receive_json()["message"]
        ws.send_json({"type": "subscribe", "channel": "runs"})
        assert ws.receive_json() == {"type": "subscribed", "channel": "runs"}


def test_unauthenticated_connections_are_closed(dashboard: TestClient) -> None:
    with dashboard.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": "forged"})
        assert ws.receive_json()["type"] == "error"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008
