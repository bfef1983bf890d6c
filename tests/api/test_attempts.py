"""The attempts API that separate workers record through: fenced, idempotent, validated, not rate limited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tars.services.runtime import Runtime
from tars.settings import Settings
from tars.storage import runs
from tars.storage.evaluations import EvaluationFilter, list_evaluations


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Tight budgets: a worker's reports must pass regardless.
    return settings.model_copy(update={"rate_limit_read": "3/minute", "rate_limit_write": "3/minute"})


def queued_run(orchestration: TestClient, runtime: Runtime, operator: dict[str, str]) -> str:
    response = orchestration.post("/api/v1/train", json={"agent_id": "dqn", "episodes": 2}, headers=operator)
    assert response.status_code == 200, response.text
    run_id: str = response.json()["run_id"]
    delivery = runtime.queue.receive("w", timeout=1)
    assert delivery is not None and delivery.job.run_id == run_id
    runtime.queue.ack(delivery)
    return run_id


def episode(n: int, reward: float = 10.0) -> dict[str, Any]:
    return {"episode": n, "reward": reward, "length": 10, "timesteps": 10 * n, "metrics": {"train/loss": 0.5}}


def test_a_worker_records_an_attempt_once_however_often_it_retries(
    orchestration: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]]
) -> None:
    operator = auth["operator"]
    run_id = queued_run(orchestration, runtime, operator)
    base = f"/api/v1/runs/{run_id}/attempts"
    started = orchestration.post(base, json={"worker": "w-1"}, headers=operator)
    assert (started.status_code, started.json()) == (201, {"number": 1})
    model = runtime.settings.artifacts / "runs" / run_id / "attempt-1" / "model.zip"
    report = {
        "seq": 1,
        "episodes": [episode(1), episode(2, 12.0)],
        "evaluations": [{"episode": 1, "reward": 11.0, "length": 11, "duration_ms": 3.5}],
        "model": {"path": str(model), "timesteps": 20},
    }
    for _ in range(5):  # retries whose answers were lost; far past the write budget
        assert orchestration.post(f"{base}/1/reports", json=report, headers=operator).status_code == 204
    cancel = orchestration.get(f"{base}/1/cancel", headers=operator)
    assert (cancel.status_code, cancel.json()) == (200, {"cancel_requested": False})
    for _ in range(2):
        ended = orchestration.post(f"{base}/1/end", json={"status": "succeeded"}, headers=operator)
        assert ended.status_code == 204
    with runtime.sessions() as session:
        run = runs.get_run(session, run_id)
        assert (run.status, run.worker, run.episodes_done, run.model_path) == ("succeeded", "w-1", 2, str(model))
        assert runs.step_rewards(session, run_id) == [10.0, 12.0]
        assert [e.reward for e in list_evaluations(session, EvaluationFilter(run_id=run_id), limit=5).items] == [11.0]
    again = orchestration.post(base, json={"worker": "late"}, headers=operator)
    assert again.status_code == 409 and "finished or cancelled" in again.json()["detail"]


def test_a_superseded_attempt_is_told_409_and_changes_nothing(
    orchestration: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]]
) -> None:
    operator = auth["operator"]
    run_id = queued_run(orchestration, runtime, operator)
    base = f"/api/v1/runs/{run_id}/attempts"
    assert orchestration.post(base, json={"worker": "slow"}, headers=operator).json() == {"number": 1}
    assert orchestration.post(base, json={"worker": "fresh"}, headers=operator).json() == {"number": 2}
    stale = orchestration.post(f"{base}/1/reports", json={"seq": 1, "episodes": [episode(1)]}, headers=operator)
    assert stale.status_code == 409 and "no longer owns it" in stale.json()["detail"]
    assert orchestration.post(f"{base}/1/end", json={"status": "failed"}, headers=operator).status_code == 409
    with runtime.sessions() as session:
        run = runs.get_run(session, run_id)
        assert (run.status, run.worker, run.attempts, runs.step_rewards(session, run_id)) == ("running", "fresh", 2, [])


@pytest.mark.parametrize(
    ("report", "field"),
    [
        ({"seq": 0}, "seq"),
        ({"seq": 1, "episodes": [{**episode(1), "reward": "NaN"}]}, "reward"),
        ({"seq": 1, "episodes": [{**episode(1), "length": -1}]}, "length"),
        ({"seq": 1, "evaluations": [{"episode": 1, "reward": 1.0, "length": 1, "duration_ms": -2.0}]}, "duration_ms"),
        ({"seq": 1, "model": {"path": "/etc/passwd", "timesteps": 1}}, "model.path"),
        ({"seq": 1, "model": {"path": "runs/../../escape/model.zip", "timesteps": 1}}, "model.path"),
        ({"seq": 1, "surprise": True}, "surprise"),
    ],
)
def test_a_bad_report_is_refused_naming_the_field_and_stores_nothing(
    orchestration: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]], report: dict[str, Any], field: str
) -> None:
    operator = auth["operator"]
    run_id = queued_run(orchestration, runtime, operator)
    base = f"/api/v1/runs/{run_id}/attempts"
    orchestration.post(base, json={"worker": "w"}, headers=operator)
    refused = orchestration.post(f"{base}/1/reports", json=report, headers=operator)
    assert refused.status_code == 422, refused.text
    assert any(item["loc"][-len(field.split(".")) :] == field.split(".") for item in refused.json()["detail"])
    with runtime.sessions() as session:
        run = runs.get_run(session, run_id)
        assert (run.model_path, runs.step_rewards(session, run_id)) == (None, [])


def test_only_operators_record_and_unknown_runs_are_404(
    orchestration: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]]
) -> None:
    run_id = queued_run(orchestration, runtime, auth["operator"])
    base = f"/api/v1/runs/{run_id}/attempts"
    assert orchestration.post(base, json={"worker": "w"}).status_code == 401
    assert orchestration.post(base, json={"worker": "w"}, headers=auth["viewer"]).status_code == 403
    missing = orchestration.post("/api/v1/runs/no-such-run/attempts", json={"worker": "w"}, headers=auth["operator"])
    assert missing.status_code == 404


def test_recovering_lost_jobs_needs_redis(
    orchestration: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    body = {"algorithms": ["dqn"]}
    response = orchestration.post("/api/v1/workers/recover", json=body, headers=auth["operator"])
    if runtime.settings.embedded:
        assert response.status_code == 409 and "embedded" in response.json()["detail"]
    else:
        assert (response.status_code, response.json()) == (200, {"requeued": []})
    unknown = orchestration.post("/api/v1/workers/recover", json={"algorithms": ["nope"]}, headers=auth["operator"])
    assert unknown.status_code == 422 and "nope" in str(unknown.json()["detail"])
