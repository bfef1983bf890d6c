"""Insight engine replicas as a separate process runs them (their own event loop, in a thread here), the
sink they hand observations to, and a record of what each replica committed."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tars.domain.insights import FindingKind, FindingState, Observation
from tars.insight.engine import InsightEngine
from tars.services.runtime import Runtime
from tars.settings import Settings
from tars.wiring.insight import build_insight_engine
from tests.waiting import eventually

BUILTIN_AGENTS = {"dqn", "a2c", "ppo", "ddpg"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Quick leases, renewals and polls: a dead replica's agents move in about a second.
    return settings.model_copy(
        update={"insight_lease_seconds": 1.0, "insight_heartbeat_seconds": 0.2, "insight_poll_seconds": 0.1}
    )


class RecordingSink:
    """The sink the engine hands its observations to, here: it keeps them all, in order. (The insight
    records that take them in a deployment are another component, tested on their own.)"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.observations: list[Observation] = []

    def apply(self, observations: Sequence[Observation]) -> None:
        with self._lock:
            self.observations.extend(observations)

    def found(self, kind: FindingKind, state: FindingState = FindingState.OPEN) -> list[Observation]:
        with self._lock:
            return [o for o in self.observations if o.finding.kind is kind and o.finding.state is state]


class Committed:
    """The ids of the evaluations each agent's checkpoints covered, as the replicas stored them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ids: dict[str, list[int]] = defaultdict(list)

    def __call__(self, agent_id: str, ids: np.ndarray[Any, Any]) -> None:
        with self._lock:
            self.ids[agent_id].extend(int(value) for value in ids)

    def count(self) -> int:
        with self._lock:
            return sum(len(ids) for ids in self.ids.values())


class Replica:
    """One engine replica on an event loop of its own, in a thread: ``stop`` as on SIGTERM (it hands its
    agents back), ``kill`` as on SIGKILL (its task cancelled mid-work; its leases lapse on their own)."""

    def __init__(self, engine: InsightEngine) -> None:
        self.engine = engine
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self.engine.run())
        with contextlib.suppress(asyncio.CancelledError):  # killed
            self._loop.run_until_complete(self._task)

    def start(self) -> Replica:
        self._thread.start()
        eventually(lambda: self.engine.running, message="the engine to start")
        return self

    def owns(self, agents: set[str]) -> bool:
        return agents <= set(self.engine.owned()) and all(self.engine.checkpoint(a) is not None for a in agents)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self.engine.stop)
        self._thread.join(20)
        assert not self._thread.is_alive(), "the engine did not stop"
        self.engine.close()

    def kill(self) -> None:
        assert self._task is not None
        self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(20)
        assert not self._thread.is_alive(), "the engine did not die"


@pytest.fixture
def replicas(runtime: Runtime) -> Iterator[Any]:
    """Starts replicas of the engine on ``runtime`` (``replicas(name, sink, committed)``); any still
    running at the end are stopped."""
    started: list[Replica] = []

    def start(name: str, sink: RecordingSink, committed: Committed | Any = None, on: Runtime | None = None) -> Replica:
        engine = build_insight_engine(on or runtime, sink, replica=name, on_committed=committed)
        replica = Replica(engine).start()
        started.append(replica)
        return replica

    yield start
    for replica in started:
        if replica.engine.running:
            replica.stop()


def post_batch(dashboard: TestClient, operator: dict[str, str], items: list[dict[str, Any]]) -> list[int]:
    response = dashboard.post("/api/v1/evaluations/batch", json={"items": items}, headers=operator)
    assert response.status_code == 201, response.text
    ids: list[int] = response.json()["ids"]
    return ids
