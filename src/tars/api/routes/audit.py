from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from tars.api.deps import AdminPrincipal, SessionDep
from tars.api.schemas import AuditEventOut, AuditPageOut, BigRowId, check_query_times
from tars.domain.audit import AuditAction, Outcome
from tars.storage import audit

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("", response_model=AuditPageOut)
def list_audit_events(
    session: SessionDep,
    _principal: AdminPrincipal,
    action: AuditAction | None = None,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    outcome: Outcome | None = None,
    since: Annotated[datetime | None, Query(description="ISO 8601 with a time zone; inclusive")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601 with a time zone; exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[BigRowId | None, Query()] = None,
) -> AuditPageOut:
    """Who did what, when and from where; newest first."""
    check_query_times(since=since, until=until)
    rows = audit.list_events(
        session,
        audit.AuditFilter(
            action=action.value if action else None,
            actor=actor,
            outcome=outcome.value if outcome else None,
            since=since,
            until=until,
        ),
        limit=limit,
        before_id=before_id,
    )
    next_before = rows[-1].id if len(rows) == limit else None
    return AuditPageOut(items=[AuditEventOut.model_validate(row) for row in rows], next_before_id=next_before)
