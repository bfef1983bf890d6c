from __future__ import annotations

import pytest
import redis
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tars.bus import keys
from tars.services.runtime import Runtime
from tests.waiting import eventually


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def test_subscribers_receive_new_evaluations_live(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    with dashboard.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": _token(auth["viewer"])})
        assert ws.receive_json()["type"] == "authenticated"
        ws.send_json({"type": "subscribe", "channel": "evaluations"})
        subscribed = ws.receive_json()
        assert (subscribed["type"], subscribed["channel"]) == ("subscribed", "evaluations")
        body = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": 150}
        created = dashboard.post("/api/v1/evaluations", json=body, headers=auth["operator"]).json()
        frame = ws.receive_json()
        assert frame["type"] == "event" and frame["channel"] == "evaluations"
        assert frame["event"] == "evaluation.created"
        assert frame["data"]["id"] == created["id"] and frame["data"]["reward"] == 150.0
        assert frame["id"] == subscribed["last_event_id"] + 1


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
        ws.send_json({"type": "subscribe", "channel": "runs", "last_event_id": "yesterday"})
        assert "last_event_id" in ws.receive_json()["message"]
        ws.send_json({"type": "subscribe", "channel": "runs"})
        assert ws.receive_json()["type"] == "subscribed"


def test_unauthenticated_connections_are_closed(dashboard: TestClient) -> None:
    with dashboard.websocket_connect("/ws") as ws:
        ws.send_json({"type": "auth", "token": "forged"})
        assert ws.receive_json()["type"] == "error"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008


def _evaluate(dashboard: TestClient, auth: dict[str, dict[str, str]], reward: float) -> int:
    body = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": reward}
    response = dashboard.post("/api/v1/evaluations", json=body, headers=auth["operator"])
    assert response.status_code == 201
    evaluation_id: int = response.json()["id"]
    return evaluation_id


def test_subscribing_with_a_last_event_id_replays_exactly_what_was_missed(
    dashboard: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    token = _token(auth["viewer"])
    with dashboard.websocket_connect(f"/ws?token={token}") as ws:
        assert ws.receive_json()["type"] == "authenticated"
        ws.send_json({"type": "subscribe", "channel": "evaluations"})
        last_seen = ws.receive_json()["last_event_id"]
        _evaluate(dashboard, auth, 1)
        seen = ws.receive_json()
        assert seen["id"] == last_seen + 1
    # Disconnected: these happen while nobody watches.
    missed = [_evaluate(dashboard, auth, reward) for reward in (2, 3, 4)]
    with dashboard.websocket_connect(f"/ws?token={token}") as ws:
        assert ws.receive_json()["type"] == "authenticated"
        ws.send_json({"type": "subscribe", "channel": "evaluations", "last_event_id": seen["id"]})
        assert ws.receive_json() == {"type": "subscribed", "channel": "evaluations", "last_event_id": seen["id"]}
        replayed = [ws.receive_json() for _ in missed]
        assert [f["data"]["id"] for f in replayed] == missed
        assert [f["id"] for f in replayed] == [seen["id"] + 1, seen["id"] + 2, seen["id"] + 3]
        live = _evaluate(dashboard, auth, 5)
        frame = ws.receive_json()
        assert (frame["id"], frame["data"]["id"]) == (seen["id"] + 4, live)


def test_an_id_out_of_the_window_gets_reset(
    runtime: Runtime, dashboard: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    first = _evaluate(dashboard, auth, 0)
    assert first
    with dashboard.websocket_connect(f"/ws?token={_token(auth['viewer'])}") as ws:
        assert ws.receive_json()["type"] == "authenticated"
        ws.send_json({"type": "subscribe", "channel": "evaluations", "last_event_id": 3})
        assert ws.receive_json() == {"type": "reset", "channel": "evaluations"}
        subscribed = ws.receive_json()
        assert subscribed["type"] == "subscribed" and subscribed["last_event_id"] > 3
        _evaluate(dashboard, auth, 1)
        assert ws.receive_json()["id"] == subscribed["last_event_id"] + 1


def _metric(dashboard: TestClient, name: str) -> float:
    for line in dashboard.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def test_the_live_feed_is_measured(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    names = [
        "tars_ws_connections",
        "tars_ws_resumed_subscriptions_total",
        "tars_ws_events_sent_total",
        "tars_ws_events_replayed_total",
        "tars_ws_resets_total",
        "tars_ws_slow_consumers_dropped_total",
    ]
    before = {name: _metric(dashboard, name) for name in names}
    token = _token(auth["viewer"])
    with dashboard.websocket_connect(f"/ws?token={token}") as ws:
        assert ws.receive_json()["type"] == "authenticated"
        assert _metric(dashboard, "tars_ws_connections") == before["tars_ws_connections"] + 1
        ws.send_json({"type": "subscribe", "channel": "evaluations"})
        last = ws.receive_json()["last_event_id"]
    _evaluate(dashboard, auth, 1)
    with dashboard.websocket_connect(f"/ws?token={token}") as ws:
        assert ws.receive_json()["type"] == "authenticated"
        ws.send_json({"type": "subscribe", "channel": "evaluations", "last_event_id": last})
        assert ws.receive_json()["type"] == "subscribed"
        assert ws.receive_json()["type"] == "event"
        ws.send_json({"type": "subscribe", "channel": "runs", "last_event_id": 1})
        assert ws.receive_json()["type"] == "reset"
        assert ws.receive_json()["type"] == "subscribed"
    after = {name: _metric(dashboard, name) for name in names}
    assert after["tars_ws_connections"] == before["tars_ws_connections"]
    assert after["tars_ws_resumed_subscriptions_total"] == before["tars_ws_resumed_subscriptions_total"] + 1
    assert after["tars_ws_events_replayed_total"] == before["tars_ws_events_replayed_total"] + 1
    assert after["tars_ws_events_sent_total"] == before["tars_ws_events_sent_total"] + 1
    assert after["tars_ws_resets_total"] == before["tars_ws_resets_total"] + 1


def test_a_replica_follows_the_bus_only_while_a_connection_is_open(
    dashboard: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]]
) -> None:
    hub = dashboard.app.state.hub  # type: ignore[attr-defined]
    redis_url = runtime.settings.redis_url

    def followers() -> int:
        """Subscribers of the events' pub/sub channel (distributed); in-process, whether the hub relays."""
        if redis_url is None:
            return int(hub.relaying)
        client = redis.Redis.from_url(redis_url)
        try:
            db = int(client.connection_pool.connection_kwargs.get("db") or 0)
            return int(dict(client.pubsub_numsub(keys.events_channel(db)))[keys.events_channel(db).encode()])
        finally:
            client.close()

    assert not hub.relaying and followers() == 0
    with dashboard.websocket_connect(f"/ws?token={_token(auth['viewer'])}") as ws:
        assert ws.receive_json()["type"] == "authenticated"
        assert hub.relaying and followers() == 1
        ws.send_json({"type": "subscribe", "channel": "agent:ppo"})
        assert ws.receive_json()["type"] == "subscribed"
        items = [{"agent_id": "ppo", "environment": "CartPole-v1", "reward": float(n)} for n in range(3)]
        ids = dashboard.post("/api/v1/evaluations/batch", json={"items": items}, headers=auth["operator"]).json()["ids"]
        frame = ws.receive_json()
        assert frame["event"] == "evaluations.created" and frame["data"]["agent_id"] == "ppo"
        rows = [dict(zip(frame["data"]["columns"], row, strict=True)) for row in frame["data"]["rows"]]
        assert [(row["id"], row["reward"]) for row in rows] == list(zip(ids, [0.0, 1.0, 2.0], strict=True))
    eventually(lambda: not hub.relaying and followers() == 0, message="the hub still follows the bus")
