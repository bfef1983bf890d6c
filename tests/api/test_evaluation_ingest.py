"""Batch ingest and Idempotency-Key: a batch is stored whole or not at all, and a retried request
never stores twice."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tars.domain.evaluations import NewEvaluation
from tars.domain.users import Principal, Role
from tars.services.runtime import Runtime
from tars.storage.tables import EvaluationRow


def item(reward: float, **changes: object) -> dict[str, object]:
    return {"agent_id": "ppo", "environment": "CartPole-v1", "reward": reward, "region": "eu-west-1", **changes}


def stored(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(EvaluationRow)) or 0)


def moment(evaluation: dict[str, Any]) -> dict[str, Any]:
    """An evaluation as JSON, its time read (events and pages write UTC differently: +00:00 and Z)."""
    return {**evaluation, "created_at": datetime.fromisoformat(evaluation["created_at"])}


def test_a_batch_is_stored_whole_in_order_and_announced(
    dashboard: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]]
) -> None:
    items = [item(float(n), duration_ms=n * 1.5) for n in range(250)]
    response = dashboard.post("/api/v1/evaluations/batch", json={"items": items}, headers=auth["operator"])
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["count"] == 250 and len(body["ids"]) == 250 and body["ids"] == sorted(body["ids"])
    listed = dashboard.get("/api/v1/evaluations?limit=1000", headers=auth["viewer"]).json()["items"]
    assert {row["id"]: row["reward"] for row in listed} == {i: float(n) for n, i in enumerate(body["ids"])}
    # Announced in events of up to 100 evaluations each, in order: the agent once, each evaluation a row.
    history = anyio.run(runtime.bus.history, "evaluations", 0)
    batches = [event.data for event in history.events if event.type == "evaluations.created"]
    assert [len(data["rows"]) for data in batches] == [100, 100, 50]
    assert {data["agent_id"] for data in batches} == {"ppo"}
    announced = [
        {"agent_id": data["agent_id"], **dict(zip(data["columns"], row, strict=True))}
        for data in batches
        for row in data["rows"]
    ]
    assert [evaluation["id"] for evaluation in announced] == body["ids"]
    by_id = {row["id"]: row for row in listed}
    assert [moment(evaluation) for evaluation in announced] == [moment(by_id[i]) for i in body["ids"]]


def test_one_bad_item_refuses_the_batch_and_every_bad_item_is_named(
    dashboard: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]]
) -> None:
    items = [item(1.0) for _ in range(10)]
    items[2] = item(1.0, agent_id="no-such-agent")
    items[5] = item(1.0, environment="Nope-v0")
    response = dashboard.post("/api/v1/evaluations/batch", json={"items": items}, headers=auth["operator"])
    assert response.status_code == 422
    named = {tuple(problem["loc"]) for problem in response.json()["detail"]}
    assert named == {("body", "items", 2, "agent_id"), ("body", "items", 5, "environment")}
    assert stored(runtime) == 0
    schema_error = [item(1.0), {**item(1.0), "reward": "high"}, item(1.0, surprise=True)]
    response = dashboard.post("/api/v1/evaluations/batch", json={"items": schema_error}, headers=auth["operator"])
    assert response.status_code == 422
    locations = [problem["loc"][:4] for problem in response.json()["detail"]]
    assert ["body", "items", 1, "reward"] in locations and ["body", "items", 2, "surprise"] in locations
    for body in ({"items": []}, {"items": [item(1.0)] * 1001}, {}):
        assert dashboard.post("/api/v1/evaluations/batch", json=body, headers=auth["operator"]).status_code == 422
    assert (
        dashboard.post("/api/v1/evaluations/batch", json={"items": [item(1.0)]}, headers=auth["viewer"]).status_code
        == 403
    )
    assert stored(runtime) == 0


def test_a_batch_body_that_is_not_json_items_is_refused_saying_why(
    dashboard: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]]
) -> None:
    """The batch body is parsed from its bytes in one pass (not by FastAPI): its errors read the same."""
    url, json_type = "/api/v1/evaluations/batch", {**auth["operator"], "Content-Type": "application/json"}
    truncated = dashboard.post(url, content=b'{"items": [{"agent_id": "ppo"', headers=json_type)
    assert truncated.status_code == 422
    assert truncated.json()["detail"][0]["type"] == "json_invalid" and truncated.json()["detail"][0]["loc"][0] == "body"
    empty = dashboard.post(url, content=b"", headers=json_type)
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body"]
    as_text = dashboard.post(url, content=b'{"items": []}', headers={**auth["operator"], "Content-Type": "text/plain"})
    assert as_text.status_code == 422 and as_text.json()["detail"][0]["loc"] == ["header", "content-type"]
    not_utf8 = dashboard.post(url, content=b'{"items": [{"agent_id": "\xff"}]}', headers=json_type)
    assert not_utf8.status_code == 422 and not_utf8.json()["detail"][0]["type"] == "json_invalid"
    # Who may submit is settled before what was submitted.
    assert dashboard.post(url, content=b"{", headers={"Content-Type": "application/json"}).status_code == 401
    assert (
        dashboard.post(url, content=b"{", headers={**auth["viewer"], "Content-Type": "text/plain"}).status_code == 403
    )
    # A vendor JSON type is JSON too.
    vendor = {**auth["operator"], "Content-Type": "application/vnd.tars+json; charset=utf-8"}
    assert dashboard.post(url, json={"items": [item(1.0)]}, headers=vendor).status_code == 201
    assert stored(runtime) == 1


@pytest.mark.parametrize("path", ["/api/v1/evaluations", "/api/v1/evaluations/batch"])
def test_a_retry_with_the_same_key_stores_nothing_twice(
    dashboard: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]], path: str
) -> None:
    body = item(7.0) if path.endswith("evaluations") else {"items": [item(7.0), item(8.0)]}
    headers = {**auth["operator"], "Idempotency-Key": "retry-me-1"}
    first = dashboard.post(path, json=body, headers=headers)
    again = dashboard.post(path, json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert "idempotent-replayed" not in first.headers and again.headers["idempotent-replayed"] == "true"
    count = stored(runtime)
    assert count == (1 if path.endswith("evaluations") else 2)
    other = item(9.0) if path.endswith("evaluations") else {"items": [item(9.0)]}
    reused = dashboard.post(path, json=other, headers=headers)
    assert reused.status_code == 422 and reused.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    # Keys belong to their principal: another user's same key is another request.
    theirs = dashboard.post(path, json=body, headers={**auth["admin"], "Idempotency-Key": "retry-me-1"})
    assert theirs.status_code == 201 and "idempotent-replayed" not in theirs.headers
    # A refused request does not use up its key.
    bad = {"items": [item(1.0, agent_id="nobody")]} if path.endswith("batch") else item(1.0, agent_id="nobody")
    fresh = {**auth["operator"], "Idempotency-Key": "after-a-422"}
    assert dashboard.post(path, json=bad, headers=fresh).status_code == 422
    assert dashboard.post(path, json=body, headers=fresh).status_code == 201
    for key in ("", "x" * 129, "has space"):
        response = dashboard.post(path, json=body, headers={**auth["operator"], "Idempotency-Key": key})
        assert response.status_code == 422, key


def test_two_requests_racing_with_one_key_store_once(runtime: Runtime) -> None:
    by = Principal(user_id=1, username="racer", role=Role.OPERATOR)
    submissions = [NewEvaluation("ppo", "CartPole-v1", float(n), "eu-west-1") for n in range(50)]
    answers = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def submit() -> None:
        start.wait()
        try:
            answers.append(runtime.evaluations.submit_batch(submissions, by=by, idempotency_key="race"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    stored_now = stored(runtime)
    assert stored_now == 50, errors
    assert [answer.replayed for answer in answers].count(False) == 1
    if len(answers) == 2:
        assert answers[0].body == answers[1].body
