"""GET /api/v1/insights (filters, keyset pages), GET /api/v1/insights/{id}, and acknowledging and
dismissing (operators; viewers read), on both backends; insight events on the live feed."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tars.domain.insights import FindingKind, Insight, Severity
from tars.services.runtime import Runtime
from tests.insight_records import at, observation, resolved

Headers = dict[str, dict[str, str]]


def _listed(dashboard: TestClient, headers: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    response = dashboard.get("/api/v1/insights", params=query, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@pytest.fixture
def stored(runtime: Runtime) -> dict[str, Insight]:
    """Insights of several kinds, severities, subjects and states, first seen a minute apart."""
    regression = observation(region="eu-west-1", severity=Severity.CRITICAL, first=1, last=2)
    made = runtime.insights.apply(
        [
            regression,
            observation(region="us-east-1", first=2, last=3),
            observation(kind=FindingKind.FAILURE_RATE_SPIKE, agent_id="a2c", region="us-west-2", first=3, last=4),
            observation(
                kind=FindingKind.LEARNING_STALL,
                severity=Severity.INFO,
                environment=None,
                region=None,
                run_id="run-7",
                first=4,
                last=5,
            ),
            observation(kind=FindingKind.DURATION_P95_RISE, agent_id="sac", environment="Pendulum-v1", first=5, last=6),
        ]
    )
    runtime.insights.apply([resolved(regression, last=10)])
    names = ["regression", "us-east", "failures", "stall", "durations"]
    insights = dict(zip(names, made, strict=True))
    runtime.insights.acknowledge(insights["failures"].id, by=None)
    runtime.insights.dismiss(insights["durations"].id, by=None)
    return insights


def test_filters_select_what_they_name(dashboard: TestClient, auth: Headers, stored: dict[str, Insight]) -> None:
    viewer = auth["viewer"]
    ids = {name: insight.id for name, insight in stored.items()}

    def names(**query: Any) -> list[str]:
        by_id = {v: k for k, v in ids.items()}
        return [by_id[item["id"]] for item in _listed(dashboard, viewer, **query)]

    assert names() == ["durations", "stall", "failures", "us-east", "regression"]  # newest first
    assert names(state="open") == ["stall", "us-east"]
    assert names(state="active") == ["stall", "failures", "us-east"]
    assert names(state="acknowledged") == ["failures"]
    assert names(state="dismissed") == ["durations"]
    assert names(state="resolved") == ["regression"]
    assert names(kind="reward_regression") == ["us-east", "regression"]
    assert names(severity="critical") == ["regression"]
    assert names(severity="info") == ["stall"]
    assert names(agent_id="a2c") == ["failures"]
    assert names(environment="Pendulum-v1") == ["durations"]
    assert names(region="us-east-1") == ["us-east"]
    assert names(run_id="run-7") == ["stall"]
    assert names(since=at(2).isoformat(), until=at(4).isoformat()) == ["failures", "us-east"]
    assert names(agent_id="ppo", kind="reward_regression", state="active") == ["us-east"]
    assert names(agent_id="nobody") == []


def test_an_insight_reads_as_its_record(dashboard: TestClient, auth: Headers, stored: dict[str, Insight]) -> None:
    regression = stored["regression"]
    body = dashboard.get(f"/api/v1/insights/{regression.id}", headers=auth["viewer"]).json()
    assert body["id"] == regression.id and body["state"] == "resolved"
    assert (body["kind"], body["severity"], body["agent_id"], body["region"]) == (
        "reward_regression", "critical", "ppo", "eu-west-1"
    )  # fmt: skip
    assert (body["first_seen_at"], body["last_seen_at"], body["resolved_at"]) == (
        "2026-03-01T12:01:00Z", "2026-03-01T12:02:00Z", "2026-03-01T12:10:00Z"
    )  # fmt: skip
    assert body["recommendation"] == {
        "action": "rollback",
        "reason": "a new model is the likeliest cause",
        "parameters": {"run_id": "r-1"},
    }
    assert body["evidence"]["before"] == {"n": 200, "mean": 480.0}
    assert body["resolution"] == "reward back to its baseline"
    assert set(body) == set(Insight.__dataclass_fields__)
    missing = dashboard.get("/api/v1/insights/999999", headers=auth["viewer"])
    assert missing.status_code == 404 and "999999" in missing.json()["detail"]
    assert dashboard.get("/api/v1/insights/0", headers=auth["viewer"]).status_code == 422
    assert dashboard.get("/api/v1/insights", headers={}).status_code == 401


def test_keyset_pages_cover_every_insight_once(dashboard: TestClient, auth: Headers, runtime: Runtime) -> None:
    runtime.insights.apply([observation(agent_id=f"agent-{n:02d}", first=n // 4, last=30) for n in range(23)])
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"limit": 5} | ({"cursor": cursor} if cursor else {})
        page = dashboard.get("/api/v1/insights", params=query, headers=auth["viewer"]).json()
        assert len(page["items"]) <= 5
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 23 and len({item["id"] for item in seen}) == 23
    order = [(item["first_seen_at"], item["id"]) for item in seen]
    assert order == sorted(order, reverse=True)
    everything = dashboard.get("/api/v1/insights", params={"limit": 500}, headers=auth["viewer"]).json()
    assert [item["id"] for item in everything["items"]] == [item["id"] for item in seen]
    assert everything["next_cursor"] is None


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("state", "closed"),
        ("kind", "bad_vibes"),
        ("severity", "apocalyptic"),
        ("region", "moon-1"),
        ("limit", "0"),
        ("limit", "501"),
        ("limit", "many"),
        ("since", "yesterday"),
        ("since", "2026-01-01T00:00:00"),  # no time zone
        ("until", "9999-12-31T23:59:59-05:00"),  # past year 9999 in UTC
        ("cursor", "not-a-cursor"),
        ("agent_id", "x" * 65),
    ],
)
def test_bad_filters_are_refused_naming_the_parameter(
    dashboard: TestClient, auth: Headers, parameter: str, value: str
) -> None:
    response = dashboard.get("/api/v1/insights", params={parameter: value}, headers=auth["viewer"])
    assert response.status_code == 422, response.text
    assert [problem["loc"] for problem in response.json()["detail"]] == [["query", parameter]]


def test_operators_acknowledge_and_dismiss_viewers_may_not(
    dashboard: TestClient, auth: Headers, runtime: Runtime
) -> None:
    [first, second] = runtime.insights.apply([observation(region="eu-west-1"), observation(region="us-east-1")])
    for action in ("acknowledge", "dismiss"):
        refused = dashboard.post(f"/api/v1/insights/{first.id}/{action}", headers=auth["viewer"])
        assert refused.status_code == 403 and "operator" in refused.json()["detail"]
        assert dashboard.post(f"/api/v1/insights/{first.id}/{action}").status_code == 401
    assert dashboard.get(f"/api/v1/insights/{first.id}", headers=auth["viewer"]).json()["state"] == "open"

    acked = dashboard.post(
        f"/api/v1/insights/{first.id}/acknowledge", json={"note": "rolling back"}, headers=auth["operator"]
    )
    assert acked.status_code == 200, acked.text
    body = acked.json()
    assert (body["state"], body["acknowledged_by"], body["note"]) == ("acknowledged", "operator-user", "rolling back")
    # No body at all, and a body without a note: the note stays.
    dismissed = dashboard.post(f"/api/v1/insights/{first.id}/dismiss", headers=auth["admin"]).json()
    assert (dismissed["state"], dismissed["dismissed_by"], dismissed["note"]) == (
        "dismissed",
        "admin-user",
        "rolling back",
    )
    again = dashboard.post(f"/api/v1/insights/{second.id}/dismiss", json={}, headers=auth["operator"]).json()
    assert (again["state"], again["note"]) == ("dismissed", None)
    assert [item["id"] for item in _listed(dashboard, auth["viewer"], state="dismissed")] == [second.id, first.id]

    audited = dashboard.get("/api/v1/audit", params={"action": "insight.acknowledged"}, headers=auth["admin"]).json()
    [entry] = audited["items"]
    assert (entry["actor"], entry["target"], entry["details"]["note"]) == (
        "operator-user",
        str(first.id),
        "rolling back",
    )
    audited = dashboard.get("/api/v1/audit", params={"action": "insight.dismissed"}, headers=auth["admin"]).json()
    assert [entry["actor"] for entry in audited["items"]] == ["operator-user", "admin-user"]


def test_bad_decisions_are_refused(dashboard: TestClient, auth: Headers, runtime: Runtime) -> None:
    seen = observation()
    [insight] = runtime.insights.apply([seen])
    url = f"/api/v1/insights/{insight.id}/acknowledge"
    operator = auth["operator"]
    for body, field in (
        ({"note": "x" * 501}, "note"),
        ({"note": 5}, "note"),
        ({"note": "fine", "by": "someone else"}, "by"),
    ):
        response = dashboard.post(url, json=body, headers=operator)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", field]
    assert (
        dashboard.post(url, content=b"[1]", headers={**operator, "Content-Type": "application/json"}).status_code == 422
    )
    assert dashboard.post("/api/v1/insights/999999/dismiss", headers=operator).status_code == 404
    assert dashboard.get(f"/api/v1/insights/{insight.id}", headers=operator).json()["state"] == "open"

    runtime.insights.apply([resolved(seen, last=20)])
    for action in ("acknowledge", "dismiss"):
        conflict = dashboard.post(f"/api/v1/insights/{insight.id}/{action}", json={"note": "late"}, headers=operator)
        assert conflict.status_code == 409 and "resolved" in conflict.json()["detail"]
    assert dashboard.get(f"/api/v1/insights/{insight.id}", headers=operator).json()["note"] is None


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def test_insight_events_arrive_on_the_insights_channel_as_the_api_shows_them(
    dashboard: TestClient, auth: Headers, runtime: Runtime
) -> None:
    with dashboard.websocket_connect(f"/ws?token={_token(auth['viewer'])}") as ws:
        assert ws.receive_json()["type"] == "authenticated"
        for channel in ("insights", "agent:a2c"):
            ws.send_json({"type": "subscribe", "channel": channel})
            assert ws.receive_json()["type"] == "subscribed"
        [insight] = runtime.insights.apply([observation(agent_id="a2c", run_id="run-3")])
        frames = [ws.receive_json(), ws.receive_json()]
        assert {frame["channel"] for frame in frames} == {"insights", "agent:a2c"}
        shown = dashboard.get(f"/api/v1/insights/{insight.id}", headers=auth["viewer"]).json()
        for frame in frames:
            assert (frame["type"], frame["event"], frame["data"]) == ("event", "insight.opened", shown)
        acked = dashboard.post(f"/api/v1/insights/{insight.id}/acknowledge", headers=auth["operator"]).json()
        frame = ws.receive_json()
        assert (frame["event"], frame["data"]) == ("insight.acknowledged", acked)
