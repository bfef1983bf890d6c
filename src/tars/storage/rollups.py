"""Evaluation rollups: per agent, environment, region and hour, maintained with the raw rows.

Stored evaluations are added in the same transaction (``add``); deleted ones make their hours be
summed again from the raw rows (``recompute``); ``rebuild`` sums everything again (after a bulk
load, or in the migration that creates the table). Summaries over a window read whole hours from
here and sum only the partial hours at its edges from the raw rows, through their indexes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Select, and_, case, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tars.domain.durations import BOUNDS_MS, BUCKETS, bucket_of
from tars.domain.evaluations import EvaluationFacts, EvaluationScope
from tars.storage.tables import DURATION_COLUMNS, EvaluationRow, evaluation_rollups

HOUR = timedelta(hours=1)
GROUP_KEYS = ("agent_id", "environment", "region")
_ADDITIVE = ("count", "failed", "reward_count", "reward_sum", "reward_square_sum", "duration_count", "duration_sum")
# A rollup row's columns, in the table's order.
COLUMNS = (*GROUP_KEYS, "bucket", *_ADDITIVE, "reward_min", "reward_max", *DURATION_COLUMNS)


class Evaluation(EvaluationFacts, Protocol):
    """What a rollup needs of an evaluation: an ORM row or one just stored."""

    @property
    def created_at(self) -> datetime: ...


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass
class Totals:
    """Sums of some evaluations: what a rollup row holds, and what a summary adds up."""

    count: int = 0
    failed: int = 0
    reward_count: int = 0
    reward_sum: float = 0.0
    reward_square_sum: float = 0.0
    reward_min: float | None = None
    reward_max: float | None = None
    duration_count: int = 0
    duration_sum: float = 0.0
    durations: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def merge(self, other: Totals) -> None:
        for name in _ADDITIVE:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.reward_min = _either(min, self.reward_min, other.reward_min)
        self.reward_max = _either(max, self.reward_max, other.reward_max)
        self.durations = [a + b for a, b in zip(self.durations, other.durations, strict=True)]

    @classmethod
    def from_mapping(cls, values: Any) -> Totals:
        # PostgreSQL sums BIGINTs as NUMERIC: back to int and float here.
        return cls(
            count=int(values["count"]),
            failed=int(values["failed"] or 0),
            reward_count=int(values["reward_count"] or 0),
            reward_sum=float(values["reward_sum"] or 0),
            reward_square_sum=float(values["reward_square_sum"] or 0),
            duration_count=int(values["duration_count"] or 0),
            duration_sum=float(values["duration_sum"] or 0),
            reward_min=None if values["reward_min"] is None else float(values["reward_min"]),
            reward_max=None if values["reward_max"] is None else float(values["reward_max"]),
            durations=[int(values[name] or 0) for name in DURATION_COLUMNS],
        )

    def as_columns(self) -> dict[str, Any]:
        columns: dict[str, Any] = {name: getattr(self, name) for name in _ADDITIVE}
        columns.update(reward_min=self.reward_min, reward_max=self.reward_max)
        columns.update(zip(DURATION_COLUMNS, self.durations, strict=True))
        return columns


def _either(pick: Any, a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else pick(a, b)


# keeping them up to date


def add(session: Session, rows: Iterable[Evaluation]) -> None:
    """Add stored evaluations to their hours (one upsert per agent, environment, region and hour)."""
    values = rollup_rows(rows)
    if values:
        session.execute(_upsert(session.get_bind().dialect.name), values)


def rollup_rows(rows: Iterable[Evaluation]) -> list[dict[str, Any]]:
    """What evaluations add to their hours, a row of totals per agent, environment, region and hour,
    in key order: concurrent writers touching the same hours lock them in one order, never deadlock."""
    groups: dict[tuple[str, str, str, datetime], list[Evaluation]] = {}
    hours: dict[datetime, datetime] = {}  # a batch shares one created_at: its hour found once
    for row in rows:
        moment = row.created_at
        hour = hours.get(moment) or hours.setdefault(moment, hour_of(moment))
        groups.setdefault((row.agent_id, row.environment, row.region, hour), []).append(row)
    return [
        {"agent_id": agent, "environment": env, "region": region, "bucket": bucket, **totals_of(members).as_columns()}
        for (agent, env, region, bucket), members in sorted(groups.items())
    ]


def totals_of(rows: Sequence[Evaluation]) -> Totals:
    """The totals of many evaluations at once: whole-list builtins, as ingest runs this per batch."""
    rewards = [row.reward for row in rows if row.status != "failed"]
    durations = [row.duration_ms for row in rows if row.duration_ms is not None]
    histogram = [0] * BUCKETS
    for duration in durations:
        histogram[bucket_of(duration)] += 1
    return Totals(
        count=len(rows),
        failed=len(rows) - len(rewards),
        reward_count=len(rewards),
        reward_sum=sum(rewards),
        reward_square_sum=sum(reward * reward for reward in rewards),
        reward_min=min(rewards, default=None),
        reward_max=max(rewards, default=None),
        duration_count=len(durations),
        duration_sum=sum(durations),
        durations=histogram,
    )


@functools.cache
def _upsert(dialect: str) -> Any:
    """The rollup upsert, built once per dialect with its values bound at execution, so that
    SQLAlchemy compiles it once (with the values inline it compiled ~300 nodes every request)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return adding_on_conflict(insert(evaluation_rollups), dialect)


def adding_on_conflict(statement: Any, dialect: str) -> Any:
    """An INSERT into the rollups that, for an hour already there, adds its totals to the row's."""
    table, new = evaluation_rollups.c, statement.excluded
    smaller, larger = (func.least, func.greatest) if dialect == "postgresql" else (func.min, func.max)
    updates: dict[str, Any] = {name: table[name] + new[name] for name in (*_ADDITIVE, *DURATION_COLUMNS)}
    updates["reward_min"] = smaller(
        func.coalesce(table.reward_min, new.reward_min), func.coalesce(new.reward_min, table.reward_min)
    )
    updates["reward_max"] = larger(
        func.coalesce(table.reward_max, new.reward_max), func.coalesce(new.reward_max, table.reward_max)
    )
    return statement.on_conflict_do_update(index_elements=[*GROUP_KEYS, "bucket"], set_=updates)


def hours_of(rows: Iterable[Evaluation]) -> set[tuple[str, str, str, datetime]]:
    return {(row.agent_id, row.environment, row.region, hour_of(row.created_at)) for row in rows}


def recompute(session: Session, hours: set[tuple[str, str, str, datetime]]) -> None:
    """Sum these hours again from the raw rows (after evaluations in them were deleted)."""
    for agent, environment, region, bucket in hours:
        session.execute(
            delete(evaluation_rollups).where(
                evaluation_rollups.c.agent_id == agent,
                evaluation_rollups.c.environment == environment,
                evaluation_rollups.c.region == region,
                evaluation_rollups.c.bucket == bucket,
            )
        )
        where = and_(
            EvaluationRow.agent_id == agent,
            EvaluationRow.environment == environment,
            EvaluationRow.region == region,
            EvaluationRow.created_at >= bucket,
            EvaluationRow.created_at < bucket + HOUR,
        )
        for found in session.execute(raw_totals(where)).mappings():
            totals = Totals.from_mapping(found)
            session.execute(
                evaluation_rollups.insert().values(
                    agent_id=agent, environment=environment, region=region, bucket=bucket, **totals.as_columns()
                )
            )


def rebuild(session: Session) -> None:
    """Sum every hour again from the raw rows."""
    dialect = session.get_bind().dialect.name
    hour = _hour_expression(dialect)
    session.execute(delete(evaluation_rollups))
    totals = raw_totals(None, extra=[hour.label("bucket")], group_by=[hour]).subquery()
    session.execute(evaluation_rollups.insert().from_select(COLUMNS, select(*(totals.c[name] for name in COLUMNS))))


def _hour_expression(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.date_trunc("hour", EvaluationRow.created_at)
    # SQLite keeps UTC times as text: cut to the hour, in the same format.
    return func.strftime("%Y-%m-%d %H:00:00.000000", EvaluationRow.created_at)


def raw_totals(
    where: ColumnElement[bool] | None,
    *,
    extra: Sequence[Any] = (),
    group_by: Sequence[Any] = (),
    source: Any = EvaluationRow.__table__,
) -> Select[Any]:
    """Totals of raw evaluations per agent, environment and region (and whatever else is grouped by),
    of the evaluations table or of any ``source`` with its columns (rows just inserted, say)."""
    row = source.c
    completed = row.status != "failed"
    duration = row.duration_ms
    histogram = []
    for index in range(BUCKETS):
        bounds = []  # bucket i holds (B[i-1], B[i]]; the first has no lower bound, the last no upper
        if index > 0:
            bounds.append(duration > BOUNDS_MS[index - 1])
        if index < len(BOUNDS_MS):
            bounds.append(duration <= BOUNDS_MS[index])
        inside = and_(*bounds)
        histogram.append(func.coalesce(func.sum(case((inside, 1), else_=0)), 0).label(DURATION_COLUMNS[index]))
    reward = case((completed, row.reward))
    query = select(
        row.agent_id,
        row.environment,
        row.region,
        *extra,
        func.count().label("count"),
        func.coalesce(func.sum(case((completed, 0), else_=1)), 0).label("failed"),
        func.count(reward).label("reward_count"),
        func.coalesce(func.sum(reward), 0.0).label("reward_sum"),
        func.coalesce(func.sum(reward * reward), 0.0).label("reward_square_sum"),
        func.min(reward).label("reward_min"),
        func.max(reward).label("reward_max"),
        func.count(duration).label("duration_count"),
        func.coalesce(func.sum(duration), 0.0).label("duration_sum"),
        *histogram,
    ).group_by(row.agent_id, row.environment, row.region, *group_by)
    return query if where is None else query.where(where)


# reading them


def totals_in_window(
    session: Session, scope: EvaluationScope, since: datetime, until: datetime
) -> dict[tuple[str, str, str], Totals]:
    """Totals per agent, environment and region of the evaluations in [since, until): whole hours
    from the rollups, the partial hours at the edges from the raw rows."""
    first_whole = hour_of(since) if since == hour_of(since) else hour_of(since) + HOUR
    last_whole = hour_of(until)
    found: dict[tuple[str, str, str], Totals] = {}

    def merge(rows: Iterable[Any]) -> None:
        for row in rows:
            found.setdefault((row["agent_id"], row["environment"], row["region"]), Totals()).merge(
                Totals.from_mapping(row)
            )

    if first_whole < last_whole:
        table = evaluation_rollups.c
        sums = [func.sum(table[name]).label(name) for name in (*_ADDITIVE, *DURATION_COLUMNS)]
        query = select(
            table.agent_id, table.environment, table.region, *sums,
            func.min(table.reward_min).label("reward_min"), func.max(table.reward_max).label("reward_max"),
        ).where(table.bucket >= first_whole, table.bucket < last_whole, *_scoped(scope, table))  # fmt: skip
        merge(session.execute(query.group_by(table.agent_id, table.environment, table.region)).mappings())
        edges = [(since, first_whole), (last_whole, until)]
    else:
        edges = [(since, until)]
    for low, high in edges:
        if low < high:
            where = and_(EvaluationRow.created_at >= low, EvaluationRow.created_at < high, *_scoped(scope, None))
            merge(session.execute(raw_totals(where)).mappings())
    return found


def series(
    session: Session, scope: EvaluationScope, since: datetime, until: datetime, step: timedelta
) -> list[tuple[datetime, Totals]]:
    """Totals per ``step`` (whole hours) from the rollups, oldest first; hours with none are left out."""
    table = evaluation_rollups.c
    query = (
        select(evaluation_rollups)
        .where(table.bucket >= hour_of(since), table.bucket < until, *_scoped(scope, table))
        .order_by(table.bucket)
    )
    start = hour_of(since)
    steps: dict[datetime, Totals] = {}
    for row in session.execute(query).mappings():
        at = start + step * ((row["bucket"] - start) // step)
        steps.setdefault(at, Totals()).merge(Totals.from_mapping(row))
    return sorted(steps.items())


def _scoped(scope: EvaluationScope, table: Any) -> list[ColumnElement[bool]]:
    columns = table if table is not None else EvaluationRow.__table__.c
    return [
        columns[name] == value
        for name, value in (("agent_id", scope.agent_id), ("environment", scope.environment), ("region", scope.region))
        if value is not None
    ]
