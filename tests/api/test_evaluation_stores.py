"""The hot list reads through one of two readers, chosen by wiring: on PostgreSQL an asyncpg pool on the
event loop, which answers byte for byte what the sync SQLAlchemy reader (SQLite's) answers from the same
rows; and whatever the route refuses, it explains, whichever reader serves."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from tars.services.evaluations import EvaluationStore
from tars.services.runtime import Runtime
from tars.storage.evaluation_store_postgres import PostgresEvaluationStore
from tars.storage.evaluation_store_sync import SyncEvaluationStore

pytestmark = pytest.mark.parametrize("backend", ["distributed"], indirect=True)

# Parameters the route does not know are ignored, as FastAPI does: the same page either way.
UNLISTED = {"unlisted": "1"}


@pytest.fixture
def statements(runtime: Runtime) -> Iterator[list[str]]:
    """SQL run through SQLAlchemy (the sync reader); the asyncpg reader runs its own."""
    ran: list[str] = []
    engine = runtime.engine

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        ran.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield ran
    event.remove(engine, "before_cursor_execute", record)


def seed(dashboard: TestClient, operator: dict[str, str]) -> None:
    items = [
        {"agent_id": agent, "environment": "CartPole-v1", "region": region, "reward": n * 1.5, "duration_ms": n}
        for n in range(12)
        for agent, region in (("ppo", "eu-west-1"), ("dqn", "us-east-1"))
    ]
    assert dashboard.post("/api/v1/evaluations/batch", json={"items": items}, headers=operator).status_code == 201


@contextmanager
def reading_with(runtime: Runtime, reader: EvaluationStore) -> Iterator[None]:
    wired = runtime.evaluations.evaluation_store
    runtime.evaluations.evaluation_store = reader
    try:
        yield
    finally:
        runtime.evaluations.evaluation_store = wired


def test_the_asyncpg_readers_pages_are_the_sync_readers_byte_for_byte(
    dashboard: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]], statements: list[str]
) -> None:
    assert isinstance(runtime.evaluations.evaluation_store, PostgresEvaluationStore)
    seed(dashboard, auth["operator"])
    viewer = auth["viewer"]
    dashboard.get("/api/v1/evaluations", headers=viewer)  # the first use of a token authenticates it
    now = datetime.now(UTC)
    for query in (
        {},
        {"agent_id": "ppo", "limit": "5"},
        {"region": "us-east-1", "environment": "CartPole-v1"},
        {"since": (now - timedelta(hours=1)).isoformat(), "limit": "7"},
        {"since": "1970-01-01T02:00+02:00", "until": (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")},
        {"until": "2000-01-01T00:00:00Z"},
    ):
        fast_cursor = slow_cursor = None
        for _ in range(4):
            statements.clear()
            fast = dashboard.get(
                "/api/v1/evaluations", params={**query, "cursor": fast_cursor} if fast_cursor else query, headers=viewer
            )
            assert fast.status_code == 200 and statements == []
            with reading_with(runtime, SyncEvaluationStore(runtime.sessions)):
                slow = dashboard.get(
                    "/api/v1/evaluations",
                    params={**query, **UNLISTED, **({"cursor": slow_cursor} if slow_cursor else {})},
                    headers=viewer,
                )
            assert slow.status_code == 200 and statements != []
            assert fast.content == slow.content
            assert fast.headers["content-type"] == slow.headers["content-type"]
            fast_cursor = slow_cursor = fast.json()["next_cursor"]
            if fast_cursor is None:
                break


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("limit=0", 422),
        ("limit=abc", 422),
        ("region=mars", 422),
        ("cursor=not-a-cursor", 422),
        ("agent_id=a%00b", 422),
        ("since=2026-01-01T00:00:00", 422),  # no time zone
        ("until=10000-01-01T00:00:00Z", 422),
        ("surprise=1", 200),  # unknown parameters are ignored, as FastAPI does
    ],
)
def test_what_the_route_refuses_it_explains(
    dashboard: TestClient, auth: dict[str, dict[str, str]], query: str, status: int
) -> None:
    response = dashboard.get(f"/api/v1/evaluations?{query}", headers=auth["viewer"])
    assert response.status_code == status, response.text


def test_no_credential_or_a_bad_one_is_refused_as_by_the_route(dashboard: TestClient) -> None:
    assert dashboard.get("/api/v1/evaluations").status_code == 401
    assert dashboard.get("/api/v1/evaluations", headers={"Authorization": "Bearer nonsense"}).status_code == 401


def test_the_request_is_counted_under_its_route_template(
    dashboard: TestClient, auth: dict[str, dict[str, str]], runtime: Runtime
) -> None:
    dashboard.get("/api/v1/evaluations", headers=auth["viewer"])
    before = metric(dashboard)
    assert dashboard.get("/api/v1/evaluations?limit=3", headers=auth["viewer"]).status_code == 200
    assert metric(dashboard) == before + 1


def metric(dashboard: TestClient) -> float:
    text = dashboard.get("/metrics").text
    wanted = ('route="/api/v1/evaluations"', 'code="200"', 'service="dashboard-api"', 'method="GET"')
    for line in text.splitlines():
        if line.startswith("http_requests_total{") and all(label in line for label in wanted):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
