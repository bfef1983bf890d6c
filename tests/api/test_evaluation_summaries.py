"""Summaries and series over a window, answered from the rollups, equal what the raw rows say."""

from __future__ import annotations

import random
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tars.domain.evaluations import NewEvaluation
from tars.services.runtime import Runtime
from tars.storage import evaluations, rollups
from tars.storage.database import transaction
from tars.storage.tables import evaluation_rollups

HOUR = timedelta(hours=1)


def seed(runtime: Runtime, start: datetime, count: int) -> list[dict[str, Any]]:
    """``count`` evaluations over 6 hours from ``start``: two agents, two regions, a few failed."""
    rng = random.Random(3)
    rows = []
    for n in range(count):
        failed = n % 17 == 0
        rows.append(
            {
                "agent_id": ("ppo", "dqn")[n % 2],
                "environment": "CartPole-v1",
                "region": ("eu-west-1", "us-east-1")[(n // 2) % 2],
                "reward": 0.0 if failed else round(rng.uniform(0, 500), 3),
                "duration_ms": round(rng.lognormvariate(2.5, 0.6), 3),
                "status": "failed" if failed else "completed",
                "created_at": start + timedelta(seconds=rng.uniform(0, 6 * 3600)),
            }
        )
    with transaction(runtime.sessions) as session:
        evaluations.insert_evaluations(session, [NewEvaluation(**row) for row in rows])
    return rows


def exact(rows: list[dict[str, Any]]) -> dict[str, Any]:
    completed = [row["reward"] for row in rows if row["status"] == "completed"]
    durations = sorted(row["duration_ms"] for row in rows)
    return {
        "count": len(rows),
        "failed": len(rows) - len(completed),
        "mean_reward": statistics.fmean(completed),
        "std_reward": statistics.pstdev(completed),
        "min_reward": min(completed),
        "max_reward": max(completed),
        "p50": durations[len(durations) // 2],
        "p95": durations[int(0.95 * len(durations))],
    }


def assert_matches(found: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    expected = exact(rows)
    assert (found["count"], found["failed"]) == (expected["count"], expected["failed"])
    assert found["mean_reward"] == pytest.approx(expected["mean_reward"], abs=1e-6)  # rounded to 6 places
    assert found["std_reward"] == pytest.approx(expected["std_reward"], rel=1e-6)
    assert (found["min_reward"], found["max_reward"]) == (expected["min_reward"], expected["max_reward"])
    assert found["p50_duration_ms"] == pytest.approx(expected["p50"], rel=0.1)
    assert found["p95_duration_ms"] == pytest.approx(expected["p95"], rel=0.15)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def test_a_summary_over_a_window_with_partial_hours_equals_the_raw_rows(
    dashboard: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]]
) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=8)
    rows = seed(runtime, start, 3000)
    since, until = start + timedelta(minutes=37), start + timedelta(hours=4, minutes=13)  # partial hours at both ends
    query = {"since": iso(since), "until": iso(until)}
    response = dashboard.get("/api/v1/evaluations/summary", params=query, headers=auth["viewer"])
    assert response.status_code == 200, response.text
    groups = {(g["agent_id"], g["region"]): g for g in response.json()["groups"]}
    assert set(groups) == {("dqn", "eu-west-1"), ("dqn", "us-east-1"), ("ppo", "eu-west-1"), ("ppo", "us-east-1")}
    inside = [row for row in rows if since <= row["created_at"] < until]
    for (agent, region), found in groups.items():
        assert_matches(found, [r for r in inside if r["agent_id"] == agent and r["region"] == region])
    by_region = dashboard.get(
        "/api/v1/evaluations/summary", params={**query, "agent_id": "ppo", "group_by": "region"}, headers=auth["viewer"]
    ).json()["groups"]
    assert [g["region"] for g in by_region] == ["eu-west-1", "us-east-1"]
    for found in by_region:
        assert found["agent_id"] is None
        assert_matches(found, [r for r in inside if r["agent_id"] == "ppo" and r["region"] == found["region"]])


def test_series_per_hour_count_what_is_stored_and_deletions_are_subtracted(
    dashboard: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]]
) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=8)
    rows = seed(runtime, start, 600)
    query = {"since": iso(start), "until": iso(start + timedelta(hours=6)), "agent_id": "ppo"}
    points = dashboard.get("/api/v1/evaluations/series", params=query, headers=auth["viewer"]).json()["points"]
    expected = {}
    for row in rows:
        if row["agent_id"] == "ppo":
            at = row["created_at"].replace(minute=0, second=0, microsecond=0)
            expected[at] = expected.get(at, 0) + 1
    assert {datetime.fromisoformat(p["at"]): p["count"] for p in points} == expected
    daily = dashboard.get("/api/v1/evaluations/series", params={**query, "interval": "day"}, headers=auth["viewer"])
    assert sum(p["count"] for p in daily.json()["points"]) == sum(expected.values())

    # Deleting an evaluation (admin) and submitting new ones keep the rollups equal to the raw rows.
    newest = dashboard.get("/api/v1/evaluations?agent_id=ppo&limit=1", headers=auth["viewer"]).json()["items"][0]
    assert dashboard.delete(f"/api/v1/evaluations/{newest['id']}", headers=auth["admin"]).status_code == 204
    batch = [{"agent_id": "ppo", "environment": "CartPole-v1", "reward": 5.0, "duration_ms": 3.0}] * 7
    assert (
        dashboard.post("/api/v1/evaluations/batch", json={"items": batch}, headers=auth["operator"]).status_code == 201
    )
    with transaction(runtime.sessions) as session:
        kept = sorted(tuple(row) for row in session.execute(select(evaluation_rollups)).all())
        rollups.rebuild(session)
        rebuilt = sorted(tuple(row) for row in session.execute(select(evaluation_rollups)).all())
    assert len(kept) == len(rebuilt)
    for a, b in zip(kept, rebuilt, strict=True):
        assert a[:4] == b[:4] and a[4:] == pytest.approx(b[4:])


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_bad_windows_and_groupings_are_named(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    now = datetime.now(UTC)
    for path, query, field in (
        ("summary", {"since": iso(now), "until": iso(now - HOUR)}, "since"),
        ("summary", {"group_by": "colour"}, "group_by"),
        ("series", {"interval": "minute"}, "interval"),
        ("series", {"since": iso(now - timedelta(days=200)), "until": iso(now)}, "interval"),
        ("series", {"since": "2026-01-01T00:00:00"}, "since"),
    ):
        response = dashboard.get(f"/api/v1/evaluations/{path}", params=query, headers=auth["viewer"])
        assert response.status_code == 422, (path, query, response.text)
        assert field in str(response.json()["detail"])
    assert dashboard.get("/api/v1/evaluations/summary").status_code == 401
