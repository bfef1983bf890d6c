"""Summaries and chart series of evaluations over a window, answered from the rollups."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from tars.domain.durations import percentile
from tars.domain.errors import InvalidField
from tars.domain.evaluations import (
    EvaluationGroup,
    EvaluationPoint,
    EvaluationScope,
    EvaluationSeries,
    EvaluationSummary,
    Interval,
)
from tars.storage import rollups
from tars.storage.rollups import Totals

GROUPINGS = ("agent_id", "environment", "region")
INTERVALS: dict[str, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
MAX_POINTS = 2_000


def check_window(since: datetime, until: datetime) -> None:
    if since >= until:
        raise InvalidField("since", "must be before until", location="query")


def statistics(totals: Totals) -> dict[str, Any]:
    """The fields of an EvaluationStatistics, from the totals of its evaluations."""
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


def summarize(
    session: Session, scope: EvaluationScope, since: datetime, until: datetime, group_by: list[str]
) -> EvaluationSummary:
    """Statistics per group (any of agent_id, environment, region; none: one group of all)."""
    check_window(since, until)
    unknown = [name for name in group_by if name not in GROUPINGS]
    if unknown:
        raise InvalidField("group_by", f"unknown grouping {unknown[0]!r}; use {', '.join(GROUPINGS)}", location="query")
    keys = [name for name in GROUPINGS if name in group_by]
    groups: dict[tuple[str, ...], Totals] = {}
    for (agent_id, environment, region), totals in rollups.totals_in_window(session, scope, since, until).items():
        found = {"agent_id": agent_id, "environment": environment, "region": region}
        groups.setdefault(tuple(found[key] for key in keys), Totals()).merge(totals)
    return EvaluationSummary(
        since=since,
        until=until,
        groups=[
            EvaluationGroup(**statistics(totals), **_keyed(keys, group)) for group, totals in sorted(groups.items())
        ],
    )


def series(
    session: Session, scope: EvaluationScope, since: datetime, until: datetime, interval: Interval
) -> EvaluationSeries:
    check_window(since, until)
    step = INTERVALS.get(interval)
    if step is None:
        raise InvalidField("interval", f"use one of {', '.join(INTERVALS)}", location="query")
    if (until - since) / step > MAX_POINTS:
        raise InvalidField("interval", f"more than {MAX_POINTS} points; use a wider interval or a shorter window")
    points = rollups.series(session, scope, since, until, step)
    return EvaluationSeries(
        since=since,
        until=until,
        interval=interval,
        points=[EvaluationPoint(**statistics(totals), at=at) for at, totals in points],
    )


def _keyed(keys: list[str], group: tuple[str, ...]) -> dict[str, Any]:
    return dict(zip(keys, group, strict=True))


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
