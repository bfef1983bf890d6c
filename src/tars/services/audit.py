"""The audit log: written in the same transaction as what it records, so neither exists without
the other."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from tars.domain.audit import AuditAction, AuditEvent, AuditFilter, Outcome
from tars.domain.users import Principal
from tars.storage import audit
from tars.storage.database import SessionFactory, transaction
from tars.storage.tables import AuditEventRow

log = logging.getLogger("tars.audit")

SYSTEM = "system"  # what the command line acts as: an operator at the machine


def record(
    session: Session,
    by: Principal | None,
    action: AuditAction,
    *,
    target: str | None = None,
    outcome: Outcome = Outcome.SUCCESS,
    details: dict[str, Any] | None = None,
    actor: str | None = None,
    address: str | None = None,
) -> AuditEventRow:
    """Record ``action``; ``actor`` names who tried when no principal exists (a failed login)."""
    row = AuditEventRow(
        actor_user_id=by.user_id if by else None,
        actor=(by.username if by else actor or SYSTEM)[:128],
        credential=by.credential.value if by else None,
        credential_id=by.credential_id if by else None,
        address=(by.address if by and by.address else address),
        action=action.value,
        target=target[:128] if target else None,
        outcome=outcome.value,
        details=details,
    )
    audit.add_event(session, row)
    log.info("%s %s %s by %s from %s", row.action, row.target or "-", row.outcome, row.actor, row.address or "-")
    return row


def record_alone(
    sessions: SessionFactory, action: AuditAction, *, outcome: Outcome, target: str, actor: str, address: str | None
) -> None:
    """Record what happened without a principal (a failed login) in a transaction of its own."""
    with transaction(sessions) as session:
        record(session, None, action, target=target, outcome=outcome, actor=actor, address=address)


class AuditLog:
    """Reading the log back, as an administrator does."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def events(self, where: AuditFilter, *, limit: int, before_id: int | None = None) -> list[AuditEvent]:
        """Newest first; ``before_id`` continues a page (ids grow with time)."""
        with self._sessions() as session:
            return audit.list_events(session, where, limit=limit, before_id=before_id)
