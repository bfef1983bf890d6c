"""Observations as the insight engine would hand them to the insight service, made to order."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from tars.domain.events import Event
from tars.domain.insights import (
    Action,
    Finding,
    FindingKind,
    FindingState,
    Observation,
    Recommendation,
    Severity,
    Subject,
)
from tars.services.runtime import Runtime

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def observation(
    *,
    kind: FindingKind = FindingKind.REWARD_REGRESSION,
    state: FindingState = FindingState.OPEN,
    severity: Severity = Severity.WARNING,
    agent_id: str = "ppo",
    environment: str | None = "CartPole-v1",
    region: str | None = "eu-west-1",
    run_id: str | None = None,
    first: float = 0,
    last: float = 10,
    drop: float = 0.2,
    summary: str = "reward fell 20 % below its baseline",
    **evidence: Any,
) -> Observation:
    """A finding first seen ``first`` minutes after T0 and last seen ``last`` minutes after it."""
    finding = Finding(
        kind=kind,
        state=state,
        severity=severity,
        subject=Subject(agent_id, environment, region, run_id),
        first_seen=1,
        last_seen=2,
        evidence={"p_value": 1e-6, "relative_drop": drop, "before": {"n": 200, "mean": 480.0}, **evidence},
        confidence=1 - 1e-6,
        impact=drop,
        summary=summary,
        recommendation=Recommendation(Action.ROLLBACK, "a new model is the likeliest cause", {"run_id": "r-1"}),
    )
    return Observation(finding, at(first), at(last))


def resolved(seen: Observation, *, last: float, summary: str = "reward back to its baseline") -> Observation:
    finding = replace(seen.finding, state=FindingState.RESOLVED, summary=summary)
    return Observation(finding, seen.first_seen_at, at(last))


def last_event_id(runtime: Runtime, channel: str = "insights") -> int:
    return anyio.run(runtime.bus.history, channel, None).last_id


def events_after(runtime: Runtime, after: int, channel: str = "insights") -> list[Event]:
    """The events the runtime's bus has published on ``channel`` since id ``after``."""
    return anyio.run(runtime.bus.history, channel, after).events
