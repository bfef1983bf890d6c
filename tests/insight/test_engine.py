"""The insight engine end to end: evaluations POSTed through the dashboard API reach its detectors once
each, in both modes, and what they show reaches the sink as observations dated by the evaluations."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from tars.domain.evaluations import EvaluationFilter
from tars.domain.insights import FindingKind, Subject
from tars.services.runtime import Runtime
from tars.storage.evaluations import read_page
from tests.insight.conftest import BUILTIN_AGENTS, Committed, RecordingSink, post_batch
from tests.waiting import eventually


def stored_ids(runtime: Runtime, agent_id: str) -> list[int]:
    with runtime.sessions() as session:
        rows = read_page(session, EvaluationFilter(agent_id=agent_id), limit=1_000_000, after=None)
    return sorted(row.id for row in rows)


def items(agent_id: str, rewards: np.ndarray[Any, Any], region: str, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"agent_id": agent_id, "environment": "CartPole-v1", "reward": float(r), "region": region, **extra}
        for r in rewards
    ]


def test_the_engine_sees_every_evaluation_of_a_batch_once(
    runtime: Runtime, dashboard: TestClient, auth: dict[str, dict[str, str]], replicas: Any
) -> None:
    sink, committed = RecordingSink(), Committed()
    replica = replicas("solo", sink, committed)
    eventually(lambda: replica.owns(BUILTIN_AGENTS), message="the replica to own every agent")
    rng = np.random.default_rng(1)
    posted: Counter[str] = Counter()
    for index in range(6):  # batches spread over agents and regions; singles between them
        batch = []
        for agent_id, region in (("ppo", "us-west-2"), ("ppo", "eu-west-1"), ("dqn", "us-east-1")):
            batch += items(agent_id, rng.normal(400, 50, 150 + index), region, duration_ms=20.0)
            posted[agent_id] += 150 + index
        post_batch(dashboard, auth["operator"], batch)
        single = dashboard.post(
            "/api/v1/evaluations",
            json={"agent_id": "a2c", "environment": "CartPole-v1", "reward": 10.0 * index},
            headers=auth["operator"],
        )
        assert single.status_code == 201, single.text
        posted["a2c"] += 1
    eventually(
        lambda: committed.count() == sum(posted.values()),
        message=lambda: f"{sum(posted.values())} evaluations committed; {committed.count()} so far",
    )
    for agent_id in ("ppo", "dqn", "a2c"):
        assert sorted(committed.ids[agent_id]) == stored_ids(runtime, agent_id)  # each once, none missing
        checkpoint = replica.engine.checkpoint(agent_id)
        assert checkpoint is not None and checkpoint.evaluations_processed == posted[agent_id]
    eventually(lambda: sum(replica.engine.lag().values()) == 0, message="the lag to come down to 0")


def test_a_regression_in_the_stream_becomes_an_observation_dated_by_its_evaluations(
    runtime: Runtime, dashboard: TestClient, auth: dict[str, dict[str, str]], replicas: Any
) -> None:
    sink = RecordingSink()
    replica = replicas("solo", sink)
    eventually(lambda: replica.owns({"ppo"}), message="the replica to own ppo")
    rng = np.random.default_rng(7)
    before = post_batch(dashboard, auth["operator"], items("ppo", rng.normal(400, 40, 400), "eu-west-1"))
    after = []
    for _ in range(4):  # a 40 % drop, in batches
        after += post_batch(dashboard, auth["operator"], items("ppo", rng.normal(240, 40, 50), "eu-west-1"))
    found = eventually(lambda: sink.found(FindingKind.REWARD_REGRESSION), message="a reward regression to be observed")
    observation = found[0]
    assert observation.finding.subject == Subject("ppo", "CartPole-v1", "eu-west-1")
    assert observation.finding.impact > 0.3
    with runtime.sessions() as session:
        rows = read_page(session, EvaluationFilter(agent_id="ppo"), limit=10_000, after=None)
    times = {row.id: row.created_at for row in rows}
    # Dated by the stored evaluations: it began after the baseline and was seen in the drop.
    assert times[before[-1]] <= observation.first_seen_at <= observation.last_seen_at
    assert observation.last_seen_at <= max(times[i] for i in after)
    assert observation.last_seen_at >= min(times[i] for i in after)
    assert not sink.found(FindingKind.REWARD_REGRESSION)[1:] or all(
        o.finding.subject == observation.finding.subject for o in sink.found(FindingKind.REWARD_REGRESSION)
    )
