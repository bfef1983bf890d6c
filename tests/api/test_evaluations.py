from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tars.domain.evaluations import NewEvaluation
from tars.services.runtime import Runtime
from tars.storage.database import transaction
from tars.storage.evaluations import insert_evaluations

PPO = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": 150}


def _stored(dashboard: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = dashboard.get("/api/v1/evaluations?limit=1000", headers=headers).json()["items"]
    return items


def test_submitted_evaluation_is_stored_and_listed(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    response = dashboard.post("/api/v1/evaluations", json=PPO, headers=auth["operator"])
    assert response.status_code == 201
    row = response.json()
    assert row["agent_id"] == "ppo"
    assert row["reward"] == 150.0
    assert row["region"] == "us-west-2"
    assert row["status"] == "completed"
    assert row["run_id"] is None
    listed = dashboard.get("/api/v1/evaluations?agent_id=ppo", headers=auth["viewer"]).json()["items"]
    assert [item["id"] for item in listed] == [row["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**PPO, "reward": "150"}, "reward"),
        ({**PPO, "reward": None}, "reward"),
        ({"agent_id": "ppo", "environment": "CartPole-v1"}, "reward"),
        ({**PPO, "region": "mars-north-1"}, "region"),
        ({**PPO, "duration_ms": -5}, "duration_ms"),
        ({**PPO, "episode_length": 2**31}, "episode_length"),  # more than the column holds on PostgreSQL
        ({**PPO, "environment": "Nope-v0"}, "environment"),
        ({**PPO, "agent_id": "unknown-agent"}, "agent_id"),
        ({**PPO, "surprise": 1}, "surprise"),
    ],
)
def test_bad_evaluations_are_refused_naming_the_field(
    dashboard: TestClient, auth: dict[str, dict[str, str]], body: dict[str, Any], field: str
) -> None:
    response = dashboard.post("/api/v1/evaluations", json=body, headers=auth["operator"])
    assert response.status_code == 422
    assert any(error["loc"][-1] == field for error in response.json()["detail"]), response.json()
    assert _stored(dashboard, auth["viewer"]) == []


def test_malformed_json_is_refused(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    headers = {**auth["operator"], "Content-Type": "application/json"}
    response = dashboard.post("/api/v1/evaluations", content=b'{"agent_id": "ppo", ', headers=headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
    assert _stored(dashboard, auth["viewer"]) == []


def test_keyset_pages_cover_every_row_once_newest_first(
    runtime: Runtime, dashboard: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with transaction(runtime.sessions) as session:
        # Pairs share a timestamp, so ordering must fall back to the id.
        insert_evaluations(
            session,
            [
                NewEvaluation(
                    agent_id="dqn",
                    environment="CartPole-v1",
                    region="eu-west-1" if index % 2 else "us-east-1",
                    reward=float(index),
                    created_at=start + timedelta(minutes=index // 2),
                )
                for index in range(25)
            ],
        )
    seen: list[float] = []
    cursor = None
    pages = 0
    while True:
        query = "/api/v1/evaluations?agent_id=dqn&limit=7" + (f"&cursor={cursor}" if cursor else "")
        page = dashboard.get(query, headers=auth["viewer"]).json()
        seen += [item["reward"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4
    assert sorted(seen) == [float(i) for i in range(25)]
    assert seen == sorted(seen, reverse=True)

    eu = dashboard.get("/api/v1/evaluations?region=eu-west-1&limit=100", headers=auth["viewer"]).json()["items"]
    assert len(eu) == 12 and all(item["region"] == "eu-west-1" for item in eu)

    window = dashboard.get(
        "/api/v1/evaluations",
        params={"since": "2026-01-01T00:02:00Z", "until": "2026-01-01T00:04:00Z"},
        headers=auth["viewer"],
    ).json()["items"]
    assert sorted(item["reward"] for item in window) == [4.0, 5.0, 6.0, 7.0]


def test_bad_query_parameters_are_named(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    for query, field in (
        ("cursor=garbage", "cursor"),
        ("cursor=OTk5OS0xMi0zMVQyMzo1OTo1OS0yMzo1OXwx", "cursor"),  # a time past 9999 in UTC
        ("limit=0", "limit"),
        ("since=2026-01-01T00:00:00", "since"),
        ("until=9999-12-31T23:59:59-23:59", "until"),
    ):
        response = dashboard.get(f"/api/v1/evaluations?{query}", headers=auth["viewer"])
        assert response.status_code == 422, query
        assert response.json()["detail"][0]["loc"][-1] == field


def test_agents_are_listed(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    items = dashboard.get("/api/v1/agents", headers=auth["viewer"]).json()["items"]
    assert {(a["agent_id"], a["environment"]) for a in items} >= {
        ("dqn", "CartPole-v1"),
        ("a2c", "CartPole-v1"),
        ("ppo", "CartPole-v1"),
        ("ddpg", "Pendulum-v1"),
    }
    assert dashboard.get("/api/v1/agents/nope", headers=auth["viewer"]).status_code == 404
