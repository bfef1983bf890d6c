"""A replica that was away longer than the channels' replay window catches up from the database: every
evaluation and training episode stored meanwhile is processed once, and what they showed is observed."""

from __future__ import annotations

import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tars.domain.insights import FindingKind
from tars.domain.progress import EpisodeFinished, Report, split_non_finite
from tars.services.report_schema import REPORT_SCHEMA
from tars.services.runtime import Runtime
from tars.settings import Settings
from tests.insight.conftest import Committed, RecordingSink, post_batch
from tests.insight.test_engine import stored_ids
from tests.waiting import eventually

WINDOW = 20


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"clear_frequency": WINDOW})  # each channel keeps its last 20 events


def started_attempt(orchestration: TestClient, runtime: Runtime, operator: dict[str, str], agent_id: str) -> str:
    """A run of ``agent_id`` whose first attempt has begun, as a separate worker begins one."""
    response = orchestration.post("/api/v1/train", json={"agent_id": agent_id, "episodes": 500}, headers=operator)
    assert response.status_code == 200, response.text
    run_id: str = response.json()["run_id"]
    delivery = runtime.queue.receive("w", timeout=1)
    assert delivery is not None and delivery.job.run_id == run_id
    runtime.queue.ack(delivery)
    started = orchestration.post(f"/api/v1/runs/{run_id}/attempts", json={"worker": "w-1"}, headers=operator)
    assert started.status_code == 201, started.text
    return run_id


def report(orchestration: TestClient, operator: dict[str, str], run_id: str, seq: int, episodes: list[Any]) -> None:
    """As a separate worker reports: the report written by the schema the service reads it with."""
    body = REPORT_SCHEMA.dump_json(Report(seq, episodes=tuple(episodes)))
    response = orchestration.post(
        f"/api/v1/runs/{run_id}/attempts/1/reports",
        content=body,
        headers={**operator, "Content-Type": "application/json"},
    )
    assert response.status_code == 204, response.text


def episode(number: int, loss: float = 0.5) -> EpisodeFinished:
    metrics, non_finite = split_non_finite({"loss": loss, "value_loss": 1.0, "steps_per_second": 500.0})
    return EpisodeFinished(number, 100.0, 100, 100 * number, metrics, non_finite)


def test_a_replica_back_after_the_window_was_overrun_catches_up_from_the_database(
    runtime: Runtime,
    dashboard: TestClient,
    orchestration: TestClient,
    auth: dict[str, dict[str, str]],
    replicas: Any,
) -> None:
    operator = auth["operator"]
    committed = Committed()
    first = replicas("before", RecordingSink(), committed)
    eventually(lambda: first.owns({"ppo", "dqn"}), message="the replica to own ppo and dqn")
    run_id = started_attempt(orchestration, runtime, operator, "dqn")
    report(orchestration, operator, run_id, 1, [episode(n) for n in range(1, 11)])
    post_batch(dashboard, operator, [{"agent_id": "ppo", "environment": "CartPole-v1", "reward": 1.0}] * 150)
    eventually(
        lambda: len(committed.ids["ppo"]) == 150,
        30,  # the engine polls; a loaded CI machine once took longer than 10 s here
        message=lambda: f"the first 150 evaluations to be processed: {len(committed.ids['ppo'])}",
    )
    eventually(lambda: first.engine.checkpoint("dqn") and first.engine.checkpoint("dqn").runs.get(run_id) == 10)  # type: ignore[union-attr]
    first.stop()

    # Away: more events on each channel than its window keeps.
    for index in range(WINDOW + 5):
        single = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": float(index), "region": "eu-west-1"}
        assert dashboard.post("/api/v1/evaluations", json=single, headers=operator).status_code == 201
    post_batch(dashboard, operator, [{"agent_id": "ppo", "environment": "CartPole-v1", "reward": 2.0}] * 250)
    report(orchestration, operator, run_id, 2, [episode(n) for n in range(11, 26)])
    report(orchestration, operator, run_id, 3, [episode(26, loss=math.nan), *(episode(n) for n in range(27, 36))])

    sink = RecordingSink()
    second = replicas("after", sink, committed)
    eventually(
        lambda: len(committed.ids["ppo"]) == len(stored_ids(runtime, "ppo")),
        message=lambda: f"ppo caught up: {len(committed.ids['ppo'])} of {len(stored_ids(runtime, 'ppo'))}",
    )
    assert sorted(committed.ids["ppo"]) == stored_ids(runtime, "ppo")  # none twice, none missed
    checkpoint = second.engine.checkpoint("ppo")
    assert checkpoint is not None and checkpoint.evaluations_processed == len(stored_ids(runtime, "ppo"))
    # The run's episodes from 11 on were read back too: the loss that went NaN at 26 is observed.
    found = eventually(lambda: sink.found(FindingKind.NON_FINITE_LOSS), message="the non-finite loss")
    assert [o.finding.subject.run_id for o in found] == [run_id]
    assert found[0].finding.first_seen == 26
    eventually(lambda: second.engine.checkpoint("dqn").runs.get(run_id) == 35)  # type: ignore[union-attr]
