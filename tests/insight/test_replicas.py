"""Replicas of the insight engine split the agents between them and hand them over, cleanly (one joins)
or not (one is killed mid-stream): every evaluation is processed exactly once (real Redis and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tars.services.runtime import Runtime
from tars.settings import Settings
from tars.storage.insight_feed import checkpoints as insight_checkpoints
from tars.wiring.runtime import build_runtime
from tests.conftest import TEST_SECRET
from tests.insight.conftest import BUILTIN_AGENTS, Committed, RecordingSink, post_batch
from tests.insight.test_engine import stored_ids
from tests.waiting import eventually

pytestmark = pytest.mark.parametrize("backend", ["distributed"], indirect=True)

AGENTS = sorted(BUILTIN_AGENTS | {f"fleet-{index}" for index in range(8)})


@pytest.fixture
def other_runtime(settings: Settings, runtime: Runtime) -> Iterator[Runtime]:
    """Another process's runtime: the same database and Redis, its own connections."""
    other = build_runtime(settings, migrate_schema=False)
    yield other
    other.close()


class Stall:
    """A replica's committed evaluations, recorded; once armed, its work thread is held after its next
    commit, as a replica stuck mid-stream (its leases still renewed) until it is killed."""

    def __init__(self, committed: Committed) -> None:
        self.committed = committed
        self.armed = threading.Event()
        self.held = threading.Event()
        self.released = threading.Event()

    def __call__(self, agent_id: str, ids: Any) -> None:
        self.committed(agent_id, ids)
        if self.armed.is_set():
            self.held.set()
            self.released.wait(60)


def post_everywhere(dashboard: TestClient, operator: dict[str, str], rng: np.random.Generator, per_agent: int) -> int:
    items = [
        {"agent_id": agent_id, "environment": "CartPole-v1", "reward": float(reward), "region": "us-east-1"}
        for agent_id in AGENTS
        for reward in rng.normal(300, 30, per_agent)
    ]
    for start in range(0, len(items), 1000):
        post_batch(dashboard, operator, items[start : start + 1000])
    return len(items)


def test_replicas_split_the_agents_hand_them_over_and_a_killed_one_loses_nothing(
    runtime: Runtime,
    other_runtime: Runtime,
    dashboard: TestClient,
    auth: dict[str, dict[str, str]],
    replicas: Any,
) -> None:
    for agent_id in AGENTS:
        if agent_id not in BUILTIN_AGENTS:
            runtime.agents.create(agent_id=agent_id, algorithm="ppo", environment="CartPole-v1", hyperparameters={})
    committed, rng = Committed(), np.random.default_rng(3)
    stall = Stall(committed)
    first = replicas("replica-a", RecordingSink(), stall)
    eventually(lambda: first.owns(set(AGENTS)), message="the first replica to own every agent")
    posted = post_everywhere(dashboard, auth["operator"], rng, 120)

    # A second replica joins: it takes the agents that now hash to it, each handed over at a checkpoint.
    second = replicas("replica-b", RecordingSink(), committed, on=other_runtime)

    def split() -> bool:
        mine, theirs = set(first.engine.owned()), set(second.engine.owned())
        return bool(mine) and bool(theirs) and not mine & theirs and mine | theirs == set(AGENTS)

    eventually(split, message=lambda: f"a split; {first.engine.owned()} and {second.engine.owned()}")
    posted += post_everywhere(dashboard, auth["operator"], rng, 150)

    # The first is killed mid-stream: no clean shutdown, its leases lapse, the second resumes its agents
    # from their checkpoints.
    stall.armed.set()
    posted += post_everywhere(dashboard, auth["operator"], rng, 200)
    eventually(stall.held.is_set, message="the first replica to be mid-stream")
    posted += post_everywhere(dashboard, auth["operator"], rng, 100)
    behind = [a for a in first.engine.owned() if len(committed.ids[a]) < len(stored_ids(runtime, a))]
    assert behind, "the first replica must have work in hand when it is killed"
    first.kill()
    eventually(lambda: second.owns(set(AGENTS)), message="the second replica to take every agent")
    posted += post_everywhere(dashboard, auth["operator"], rng, 50)

    eventually(
        lambda: committed.count() >= posted,
        timeout=30,
        message=lambda: f"{posted} evaluations committed; {committed.count()} so far",
    )
    for agent_id in AGENTS:
        assert sorted(committed.ids[agent_id]) == stored_ids(runtime, agent_id), agent_id
    checkpoints = second.engine._feed.checkpoints(AGENTS)
    assert {a: c.evaluations_processed for a, c in checkpoints.items()} == {
        agent_id: len(stored_ids(runtime, agent_id)) for agent_id in AGENTS
    }
    assert committed.count() == posted
    stall.released.set()  # the killed replica's thread, let go: it finds its loop gone


def test_a_killed_insight_engine_process_is_resumed_by_another_replica(
    runtime: Runtime,
    dashboard: TestClient,
    auth: dict[str, dict[str, str]],
    replicas: Any,
    settings: Settings,
    tmp_path: Path,
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TARS_")}
    env |= {
        "TARS_DATA_DIR": str(tmp_path / "data"),
        "TARS_JWT_SECRET": TEST_SECRET,
        "TARS_DATABASE_URL": str(settings.database_url),
        "TARS_REDIS_URL": str(settings.redis_url),
        "TARS_INSIGHT_REPLICA": "process-a",
        "TARS_INSIGHT_LEASE_SECONDS": "1",
        "TARS_INSIGHT_HEARTBEAT_SECONDS": "0.2",
        "TARS_INSIGHT_POLL_SECONDS": "0.1",
    }
    log = tmp_path / "process-a.log"
    with open(log, "wb") as out:
        command = [sys.executable, "-m", "tars", "serve", "insight-engine", "--port", "0"]
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    agents = ["ppo", "dqn"]
    rng = np.random.default_rng(5)

    def post_to(agent_ids: list[str]) -> None:
        for agent_id in agent_ids:
            item = {"agent_id": agent_id, "environment": "CartPole-v1", "region": "eu-west-1"}
            post_batch(dashboard, auth["operator"], [{**item, "reward": r} for r in rng.normal(300, 30, 1000)])

    try:

        def processed() -> dict[str, int]:
            with runtime.sessions() as session:
                found = insight_checkpoints(session, agents)
            return {agent_id: found[agent_id].evaluations_processed for agent_id in found}

        def alive() -> None:
            assert process.poll() is None, log.read_text()[-3000:]

        eventually(lambda: alive() or len(processed()) == 2, 30, message="the process to take ppo and dqn")
        post_to(agents)
        eventually(lambda: alive() or sum(processed().values()) > 0, 30, message="the process to make progress")
        post_to(agents)
        process.send_signal(signal.SIGKILL)  # mid-stream, no clean shutdown: its leases lapse
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    post_to(agents)  # while nobody holds the agents
    committed = Committed()
    resumed = replicas("replica-b", RecordingSink(), committed)
    eventually(lambda: resumed.owns(set(agents)), message="the replica to take over")
    eventually(
        lambda: processed() == {agent_id: len(stored_ids(runtime, agent_id)) for agent_id in agents},
        timeout=20,
        message=lambda: f"every evaluation counted once: {processed()}",
    )
    for agent_id in agents:
        stored = stored_ids(runtime, agent_id)
        mine = sorted(committed.ids[agent_id])
        # The killed process covered a prefix; the replica that took over, the rest, each once.
        assert len(mine) >= 1000 and mine == stored[len(stored) - len(mine) :]
