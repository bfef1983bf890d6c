"""Summaries and chart series of evaluations over a window, answered from the rollups."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from tars.domain.durations import percentile
from tars.domain.errors import InvalidField
from tars.storage import rollups
from tars.storage.rollups import Scope, Totals

GROUPINGS = ("agent_id", "environment", "region")
INTERVALS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
MAX_POINTS = 2_000


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        if self.since >= self.until:
            raise InvalidField("since", "must be before until", location="query")


def statistics(totals: Totals) -> dict[str, Any]:
    mean = totals.reward_sum / totals.reward_count if totals.reward_count else None
    variance = totals.reward_square_sum / totals.reward_count - mean * mean if mean is not None else None
    return {
        "count": totals.count,
        "failed": totals.failed,
        "mean_reward": _rounded(mean),
        "std_reward": _rounded(math.sqrt(max(0.0, variance))) if variance is not None else None,
        "min_reward": totals.reward_min,
        "max_reward": totals.reward_max,
        "mean_duration_ms": _rounded(totals.duration_sum / totals.duration_count) if totals.duration_count else None,
        "p50_duration_ms": percentile(totals.durations, 0.50),
        "p95_duration_ms": percentile(totals.durations, 0.95),
    }


def summarize(session: Session, scope: Scope, window: Window, group_by: list[str]) -> list[dict[str, Any]]:
    """Statistics per group (any of agent_id, environment, region; none: one group of all)."""
    unknown = [name for name in group_by if name not in GROUPINGS]
    if unknown:
        raise InvalidField("group_by", f"unknown grouping {unknown[0]!r}; use {', '.join(GROUPINGS)}", location="query")
    keys = [name for name in GROUPINGS if name in group_by]
    groups: dict[tuple[str, ...], Totals] = {}
    for (agent_id, environment, region), totals in rollups.totals_in_window(
        session, scope, window.since, window.until
    ).items():
        found = {"agent_id": agent_id, "environment": environment, "region": region}
        groups.setdefault(tuple(found[key] for key in keys), Totals()).merge(totals)
    return [{**dict(zip(keys, group, strict=True)), **statistics(totals)} for group, totals in sorted(groups.items())]


def series(session: Session, scope: Scope, window: Window, interval: str) -> list[dict[str, Any]]:
    step = INTERVALS.get(interval)
    if step is None:
        raise InvalidField("interval", f"use one of {', '.join(INTERVALS)}", location="query")
    if (window.until - window.since) / step > MAX_POINTS:
        raise InvalidField("interval", f"more than {MAX_POINTS} points; use a wider interval or a shorter window")
    points = rollups.series(session, scope, window.since, window.until, step)
    return [{"at": at, **statistics(totals)} for at, totals in points]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
