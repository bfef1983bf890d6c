"""The evaluations API: HTTP in, a call to the evaluation service, its records out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from pydantic import BaseModel, Field

from tars.api.deps import (
    AdminPrincipal,
    OperatorPrincipal,
    RuntimeDep,
    ViewerPrincipal,
)
from tars.api.errors import UNREADABLE_BODY
from tars.api.lean import LeanRoute
from tars.api.schemas import (
    BigRowId,
    EvaluationBatchIn,
    EvaluationBatchOut,
    EvaluationIn,
    EvaluationOut,
    EvaluationPageOut,
    EvaluationSeriesOut,
    EvaluationSummaryOut,
    check_query_times,
)
from tars.domain.evaluations import (
    EvaluationFilter,
    EvaluationScope,
    EvaluationSeries,
    EvaluationSummary,
    Interval,
    NewEvaluation,
)
from tars.domain.regions import Region
from tars.services.evaluations import Receipt
from tars.services.runtime import Runtime

router = APIRouter(prefix="/api/v1/evaluations", tags=["evaluations"])


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="A retry with the same key gets the first answer and stores nothing twice (kept 24 h)",
    ),
]
IDEMPOTENT = {
    **UNREADABLE_BODY,
    422: {"description": "invalid items (each named), or a key reused for another request"},
}


async def create_evaluation(
    request: Request, body: EvaluationIn, principal: OperatorPrincipal, idempotency_key: IdempotencyKeyHeader = None
) -> Response:
    """One evaluation; its answer is the stored evaluation."""
    runtime: Runtime = request.app.state.runtime
    receipt = await runtime.evaluations.submit_on_loop(
        _submission(body, runtime.settings.region), by=principal, idempotency_key=idempotency_key
    )
    return _answered(receipt)


# The write most clients make, one evaluation a request: served lean, on the event loop.
create_route = LeanRoute(
    "/api/v1/evaluations",
    create_evaluation,
    methods=["POST"],
    tags=["evaluations"],
    response_model=EvaluationOut,
    status_code=status.HTTP_201_CREATED,
    responses=IDEMPOTENT,
)


async def create_evaluations(
    request: Request,
    body: EvaluationBatchIn,
    principal: OperatorPrincipal,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Up to 1,000 evaluations, stored all together or not at all; every invalid item is named."""
    runtime: Runtime = request.app.state.runtime
    region = runtime.settings.region
    receipt = await runtime.evaluations.submit_batch_on_loop(
        # Positionally, in one comprehension: a call per item cost a thousand-item batch a tenth of its time.
        [
            NewEvaluation(
                item.agent_id,
                item.environment,
                item.reward,
                item.region or region,
                item.episode_length,
                item.duration_ms,
            )
            for item in body.items
        ],
        by=principal,
        idempotency_key=idempotency_key,
    )
    return _answered(receipt)


# Up to 1,000 items, parsed and validated from the bytes in one pass: served lean, on the event loop.
create_batch_route = LeanRoute(
    "/api/v1/evaluations/batch",
    create_evaluations,
    methods=["POST"],
    tags=["evaluations"],
    response_model=EvaluationBatchOut,
    status_code=status.HTTP_201_CREATED,
    responses=IDEMPOTENT,
)


def _submission(body: EvaluationIn, default_region: str) -> NewEvaluation:
    return NewEvaluation(
        agent_id=body.agent_id,
        environment=body.environment,
        reward=body.reward,
        region=body.region or default_region,
        episode_length=body.episode_length,
        duration_ms=body.duration_ms,
    )


def _answered(receipt: Receipt) -> Response:
    headers = {"Idempotent-Replayed": "true"} if receipt.replayed else None
    return Response(receipt.body, status_code=status.HTTP_201_CREATED, headers=headers, media_type="application/json")


DEFAULT_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class ScopedWindow:
    scope: EvaluationScope
    since: datetime
    until: datetime


async def scoped_window(
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    environment: Annotated[str | None, Query(max_length=64)] = None,
    region: Region | None = None,
    since: Annotated[datetime | None, Query(description="ISO 8601 with a time zone; default: until - 24 h")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601 with a time zone; default: now")] = None,
) -> ScopedWindow:
    """The filters summaries and series share: which evaluations, over which window."""
    check_query_times(since=since, until=until)
    end = until or datetime.now(UTC)
    return ScopedWindow(EvaluationScope(agent_id, environment, region), since or end - DEFAULT_WINDOW, end)


Scoped = Annotated[ScopedWindow, Depends(scoped_window)]


@router.get("/summary", response_model=EvaluationSummaryOut)
def summarize_evaluations(
    runtime: RuntimeDep,
    _principal: ViewerPrincipal,
    scoped: Scoped,
    group_by: Annotated[
        list[str] | None, Query(description="agent_id, environment, region; default agent_id, region")
    ] = None,
) -> EvaluationSummary:
    """Count, failures, reward mean/std/min/max and duration p50/p95 per group over a window, from
    the hourly rollups (and the raw rows of the partial hours at its edges)."""
    groups = group_by if group_by is not None else ["agent_id", "region"]
    return runtime.evaluations.summary(scoped.scope, scoped.since, scoped.until, groups)


@router.get("/series", response_model=EvaluationSeriesOut)
def evaluation_series(
    runtime: RuntimeDep, _principal: ViewerPrincipal, scoped: Scoped, interval: Interval = "hour"
) -> EvaluationSeries:
    """The same statistics per hour or day, for charts (intervals without evaluations are left out)."""
    return runtime.evaluations.series(scoped.scope, scoped.since, scoped.until, interval)


class ListQuery(BaseModel):
    """The list's query parameters (unknown ones are ignored, as FastAPI does)."""

    agent_id: str | None = None
    environment: str | None = None
    region: Region | None = None
    run_id: str | None = None
    since: datetime | None = Field(default=None, description="ISO 8601 with a time zone; inclusive")
    until: datetime | None = Field(default=None, description="ISO 8601 with a time zone; exclusive")
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=200)


async def list_evaluations(
    request: Request, query: Annotated[ListQuery, Query()], _principal: ViewerPrincipal
) -> Response:
    """Evaluations newest first, a page at a time (follow `next_cursor`)."""
    check_query_times(since=query.since, until=query.until)
    where = EvaluationFilter(
        agent_id=query.agent_id,
        environment=query.environment,
        region=query.region,
        run_id=query.run_id,
        since=query.since,
        until=query.until,
    )
    runtime: Runtime = request.app.state.runtime
    body = await runtime.evaluations.page_json(where, limit=query.limit, cursor=query.cursor)
    return Response(body, media_type="application/json")


# The read dashboards and clients poll most: served lean (tars.api.lean), and matched before any
# other route by the application that mounts it.
list_route = LeanRoute(
    "/api/v1/evaluations",
    list_evaluations,
    methods=["GET"],
    tags=["evaluations"],
    response_model=EvaluationPageOut,
    responses={422: {"description": "a query parameter out of range, or not a cursor this API returned"}},
)


@router.delete(
    "/{evaluation_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {"description": "no such evaluation"}}
)
def remove_evaluation(evaluation_id: BigRowId, runtime: RuntimeDep, principal: AdminPrincipal) -> Response:
    """Delete one evaluation (a mistaken submission, say); the audit log keeps what it was."""
    runtime.evaluations.delete(evaluation_id, by=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
