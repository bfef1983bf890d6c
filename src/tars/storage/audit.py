from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from tars.domain.audit import AuditEvent, AuditFilter
from tars.storage.tables import AuditEventRow


def add_event(session: Session, row: AuditEventRow) -> AuditEventRow:
    session.add(row)
    session.flush()
    return row


def list_events(session: Session, where: AuditFilter, *, limit: int, before_id: int | None) -> list[AuditEvent]:
    """Newest first; ``before_id`` continues a page (ids grow with time)."""
    query = select(AuditEventRow).order_by(AuditEventRow.id.desc()).limit(limit)
    if where.action is not None:
        query = query.where(AuditEventRow.action == where.action.value)
    if where.actor is not None:
        query = query.where(AuditEventRow.actor == where.actor)
    if where.outcome is not None:
        query = query.where(AuditEventRow.outcome == where.outcome.value)
    if where.since is not None:
        query = query.where(AuditEventRow.created_at >= where.since)
    if where.until is not None:
        query = query.where(AuditEventRow.created_at < where.until)
    if before_id is not None:
        query = query.where(AuditEventRow.id < before_id)
    return [event_record(row) for row in session.scalars(query)]


def event_record(row: AuditEventRow) -> AuditEvent:
    return AuditEvent(
        id=row.id,
        created_at=row.created_at,
        actor=row.actor,
        actor_user_id=row.actor_user_id,
        credential=row.credential,
        credential_id=row.credential_id,
        address=row.address,
        action=row.action,
        target=row.target,
        outcome=row.outcome,
        details=row.details,
    )
