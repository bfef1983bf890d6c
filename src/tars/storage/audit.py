from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tars.storage.tables import AuditEventRow


def add_event(session: Session, row: AuditEventRow) -> AuditEventRow:
    session.add(row)
    session.flush()
    return row


@dataclass(frozen=True)
class AuditFilter:
    action: str | None = None
    actor: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_events(session: Session, where: AuditFilter, *, limit: int, before_id: int | None) -> list[AuditEventRow]:
    """Newest first; ``before_id`` continues a page (ids grow with time)."""
    query = select(AuditEventRow).order_by(AuditEventRow.id.desc()).limit(limit)
    if where.action is not None:
        query = query.where(AuditEventRow.action == where.action)
    if where.actor is not None:
        query = query.where(AuditEventRow.actor == where.actor)
    if where.outcome is not None:
        query = query.where(AuditEventRow.outcome == where.outcome)
    if where.since is not None:
        query = query.where(AuditEventRow.created_at >= where.since)
    if where.until is not None:
        query = query.where(AuditEventRow.created_at < where.until)
    if before_id is not None:
        query = query.where(AuditEventRow.id < before_id)
    return list(session.scalars(query))
