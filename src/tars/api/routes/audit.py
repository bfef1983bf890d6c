from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from tars.api.deps import AdminPrincipal, RuntimeDep
from tars.api.schemas import AuditPageOut, BigRowId, check_query_times
from tars.domain.audit import AuditAction, AuditFilter, Outcome

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("", response_model=AuditPageOut)
def list_audit_events(
    runtime: RuntimeDep,
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
    where = AuditFilter(action=action, actor=actor, outcome=outcome, since=since, until=until)
    events = runtime.audit_log.events(where, limit=limit, before_id=before_id)
    next_before = events[-1].id if len(events) == limit else None
    return AuditPageOut(items=events, next_before_id=next_before)
