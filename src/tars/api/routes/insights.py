"""The insights API: what the insight engine found, listed and read by everyone, acknowledged or
dismissed by operators. Any app may include the router (dashboard-api does; so can the engine's)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from tars.api.deps import OperatorPrincipal, RuntimeDep, ViewerPrincipal
from tars.api.errors import UNREADABLE_BODY
from tars.api.schemas import BigRowId, InsightNoteIn, InsightOut, InsightPageOut, check_query_times
from tars.domain.insights import FindingKind, Insight, InsightFilter, InsightPage, Severity, StateFilter
from tars.domain.regions import Region
from tars.services.insights import MAX_PAGE

router = APIRouter(prefix="/api/v1/insights", tags=["insights"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such insight"}}
DECIDED: dict[int | str, dict[str, Any]] = {
    **UNREADABLE_BODY,
    **NOT_FOUND,
    409: {"description": "the insight is resolved: its condition cleared"},
}


@router.get(
    "",
    response_model=InsightPageOut,
    responses={422: {"description": "a filter that is not one of its values, or not a cursor this API returned"}},
)
def list_insights(
    runtime: RuntimeDep,
    _principal: ViewerPrincipal,
    state: Annotated[StateFilter | None, Query(description="One state, or active (open and acknowledged)")] = None,
    kind: FindingKind | None = None,
    severity: Severity | None = None,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    environment: Annotated[str | None, Query(max_length=64)] = None,
    region: Region | None = None,
    run_id: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[datetime | None, Query(description="first seen at or after; ISO 8601 with a time zone")] = None,
    until: Annotated[datetime | None, Query(description="first seen before; ISO 8601 with a time zone")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the page before")] = None,
) -> InsightPage:
    """Insights newest first (by when their condition began), a page at a time (follow `next_cursor`)."""
    check_query_times(since=since, until=until)
    where = InsightFilter(
        state=state,
        kind=kind,
        severity=severity,
        agent_id=agent_id,
        environment=environment,
        region=region,
        run_id=run_id,
        since=since,
        until=until,
    )
    return runtime.insights.list(where, limit=limit, cursor=cursor)


@router.get("/{insight_id}", response_model=InsightOut, responses=NOT_FOUND)
def get_insight(insight_id: BigRowId, runtime: RuntimeDep, _principal: ViewerPrincipal) -> Insight:
    return runtime.insights.get(insight_id)


@router.post("/{insight_id}/acknowledge", response_model=InsightOut, responses=DECIDED)
def acknowledge_insight(
    insight_id: BigRowId, runtime: RuntimeDep, principal: OperatorPrincipal, body: InsightNoteIn | None = None
) -> Insight:
    """Someone is on it: it stays active and keeps being updated until its condition clears."""
    return runtime.insights.acknowledge(insight_id, by=principal, note=body.note if body else None)


@router.post("/{insight_id}/dismiss", response_model=InsightOut, responses=DECIDED)
def dismiss_insight(
    insight_id: BigRowId, runtime: RuntimeDep, principal: OperatorPrincipal, body: InsightNoteIn | None = None
) -> Insight:
    """Not worth attention: kept up to date quietly, and not opened again until its condition clears."""
    return runtime.insights.dismiss(insight_id, by=principal, note=body.note if body else None)
