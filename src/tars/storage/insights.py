"""Insights: the unresolved one of a kind and subject (locked for the change about to be made), a
new one stored unless a concurrent writer stored it first, pages newest first, and counts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from tars.domain.errors import NotFound
from tars.domain.evaluations import Position
from tars.domain.insights import (
    ACTIVE,
    Action,
    FindingKind,
    Insight,
    InsightFilter,
    InsightState,
    Recommendation,
    Severity,
    Subject,
)
from tars.storage.keyset import newest_first
from tars.storage.tables import InsightRow

# PostgreSQL's codes for a transaction that lost a race and may simply be run again: a deadlock, a
# serialization failure, a unique key another transaction took.
_RETRYABLE_CODES = {"40P01", "40001", "23505"}
RESOLVED = InsightState.RESOLVED.value


def subject_key(subject: Subject) -> str:
    """The subject as one text value, unambiguous (a JSON array: no field can pass for another) and
    with its None fields in it: UNIQUE treats NULLs as distinct, so the columns alone cannot hold
    one unresolved insight per subject."""
    return orjson.dumps([subject.agent_id, subject.environment, subject.region, subject.run_id]).decode()


def is_lost_race(exc: Exception) -> bool:
    """Whether ``exc`` is a concurrent writer's doing, so the transaction may be run again."""
    if isinstance(exc, IntegrityError | StaleDataError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    code = getattr(exc.orig, "sqlstate", None)
    return code in _RETRYABLE_CODES or "database is locked" in str(exc.orig)


def insight_of(row: InsightRow) -> Insight:
    recommendation = row.recommendation
    return Insight(
        id=row.id,
        kind=FindingKind(row.kind),
        severity=Severity(row.severity),
        state=InsightState(row.state),
        agent_id=row.agent_id,
        environment=row.environment,
        region=row.region,
        run_id=row.run_id,
        first_seen_at=row.first_seen_at,
        last_seen_at=row.last_seen_at,
        resolved_at=row.resolved_at,
        evidence=row.evidence,
        confidence=row.confidence,
        impact=row.impact,
        summary=row.summary,
        recommendation=Recommendation(
            Action(recommendation["action"]), recommendation["reason"], dict(recommendation.get("parameters") or {})
        ),
        resolution=row.resolution,
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at,
        dismissed_by=row.dismissed_by,
        dismissed_at=row.dismissed_at,
        note=row.note,
        updated_at=row.updated_at,
    )


def unresolved(session: Session, kind: FindingKind, key: str) -> InsightRow | None:
    """The unresolved insight of ``kind`` about the subject ``key``, locked until the transaction
    ends (PostgreSQL; SQLite has one writer at a time anyway)."""
    return session.scalars(
        select(InsightRow)
        .where(InsightRow.kind == kind.value, InsightRow.subject_key == key, InsightRow.state != RESOLVED)
        .with_for_update()
    ).one_or_none()


def last_resolved_at(session: Session, kind: FindingKind, key: str) -> datetime | None:
    """When the subject's latest resolved insight of ``kind`` cleared, if it ever had one."""
    moment: datetime | None = session.scalar(
        select(func.max(InsightRow.resolved_at)).where(
            InsightRow.kind == kind.value, InsightRow.subject_key == key, InsightRow.state == RESOLVED
        )
    )
    return moment


def insert_unless_taken(session: Session, values: Mapping[str, Any]) -> InsightRow | None:
    """Store a new insight; None if a concurrent transaction stored an unresolved one of the same
    kind and subject first (it waits for that one to commit, then leaves it be)."""
    dialect = session.get_bind().dialect.name
    insert_into = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert_into(InsightRow).values(**values).on_conflict_do_nothing().returning(InsightRow.id)
    inserted = session.execute(statement).scalar()
    return None if inserted is None else session.get(InsightRow, inserted)


def get_row(session: Session, insight_id: int, *, for_update: bool = False) -> InsightRow:
    row = session.get(InsightRow, insight_id, with_for_update=for_update)
    if row is None:
        raise NotFound("insight", insight_id)
    return row


def read_page(session: Session, where: InsightFilter, *, limit: int, after: Position | None) -> list[Insight]:
    """Up to ``limit`` + 1 insights after ``after``, newest first (by first_seen_at, then id)."""
    query = select(InsightRow)
    if where.state is not None:
        query = query.where(InsightRow.state.in_([state.value for state in where.state.states]))
    for column, value in (
        (InsightRow.kind, where.kind),
        (InsightRow.severity, where.severity),
        (InsightRow.agent_id, where.agent_id),
        (InsightRow.environment, where.environment),
        (InsightRow.region, where.region),
        (InsightRow.run_id, where.run_id),
    ):
        if value is not None:
            query = query.where(column == str(value))
    query = newest_first(
        query,
        InsightRow.first_seen_at,
        InsightRow.id,
        since=where.since,
        until=where.until,
        after=after,
        limit=limit,
    )
    return [insight_of(row) for row in session.scalars(query)]


def active_counts(session: Session) -> dict[tuple[FindingKind, Severity], int]:
    """Open and acknowledged insights per kind and severity (those with none left out)."""
    rows = session.execute(
        select(InsightRow.kind, InsightRow.severity, func.count())
        .where(InsightRow.state.in_([state.value for state in ACTIVE]))
        .group_by(InsightRow.kind, InsightRow.severity)
    ).all()
    return {(FindingKind(kind), Severity(severity)): int(count) for kind, severity, count in rows}
