"""Realistic evaluations in bulk, for benchmarks and demos (`tars dev seed`).

Every built-in agent in every region, spread over the last ``days``: rewards that improve with time
as training would make them (CartPole towards 500, Pendulum from about -1,400 towards -150), episode
durations log-normal around a region's latency, about 1 % failed. Seeded, so a run can be repeated.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from tars.domain.agents import BUILTIN_AGENTS
from tars.domain.regions import REGIONS
from tars.storage import evaluations
from tars.storage.agents import ensure_builtin_agents
from tars.storage.database import make_session_factory, transaction
from tars.storage.types import utcnow

_REGION_LATENCY_MS = {"us-west-2": 8.0, "us-east-1": 10.0, "eu-west-1": 14.0, "ap-southeast-1": 22.0}
_FAILED_SHARE = 0.01


class EvaluationSeeder:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def seed(self, count: int, *, days: float = 30.0, seed: int = 0) -> int:
        """Add ``count`` generated evaluations over the last ``days`` (and the built-in agents they
        belong to, if missing), as fast as the database takes them; returns how many."""
        with transaction(make_session_factory(self._engine)) as session:
            ensure_builtin_agents(session)
        rows = generate_evaluations(count, now=utcnow(), days=days, seed=seed)
        return evaluations.bulk_load(self._engine, rows)


def generate_evaluations(count: int, *, now: datetime, days: float = 30.0, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``count`` evaluation rows, oldest first."""
    rng = random.Random(seed)
    agents = [(spec.agent_id, spec.environment) for spec in BUILTIN_AGENTS]
    span = timedelta(days=days)
    start = now - span
    for n in range(count):
        agent_id, environment = agents[n % len(agents)]
        region = REGIONS[(n // len(agents)) % len(REGIONS)]
        progress = n / max(1, count - 1)
        failed = rng.random() < _FAILED_SHARE
        yield {
            "agent_id": agent_id,
            "environment": environment,
            "region": region,
            "reward": 0.0 if failed else round(_reward(environment, progress, rng), 3),
            "episode_length": None if failed else _length(environment, progress, rng),
            "duration_ms": round(rng.lognormvariate(math.log(_REGION_LATENCY_MS[region]), 0.5), 3),
            "status": "failed" if failed else "completed",
            "created_at": start + span * progress,
        }


def _reward(environment: str, progress: float, rng: random.Random) -> float:
    if environment.startswith("Pendulum"):
        return min(0.0, -1400.0 + 1250.0 * progress + rng.gauss(0, 120))
    return max(8.0, min(500.0, 20.0 + 480.0 * float(progress**0.7) + rng.gauss(0, 40)))


def _length(environment: str, progress: float, rng: random.Random) -> int:
    if environment.startswith("Pendulum"):
        return 200
    return int(max(8, min(500, 20 + 480 * progress**0.7 + rng.gauss(0, 40))))
