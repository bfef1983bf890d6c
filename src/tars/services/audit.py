"""The audit log: written in the same transaction as what it records, so neither exists without
the other."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from tars.domain.audit import AuditAction, Outcome
from tars.domain.users import Principal
from tars.storage import audit
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
