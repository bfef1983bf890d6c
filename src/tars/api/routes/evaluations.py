from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from tars.api.bodies import JsonBody
from tars.api.deps import AdminPrincipal, OperatorPrincipal, RuntimeDep, SessionDep, ViewerPrincipal
from tars.api.errors import UNREADABLE_BODY
from tars.api.schemas import (
    BigRowId,
    EvaluationBatchIn,
    EvaluationBatchOut,
    EvaluationGroupOut,
    EvaluationIn,
    EvaluationOut,
    EvaluationPageOut,
    EvaluationPointOut,
    EvaluationSeriesOut,
    EvaluationSummaryOut,
    Region,
    check_query_times,
)
from tars.domain.users import Principal
from tars.services import summaries
from tars.services.evaluations import (
    Answer,
    IdempotencyKey,
    delete_evaluation,
    submit_evaluations,
)
from tars.services.runtime import Runtime
from tars.storage import evaluations
from tars.storage.evaluations import NewEvaluation
from tars.storage.rollups import Scope
from tars.storage.types import utcnow

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


@router.post("", response_model=EvaluationOut, status_code=status.HTTP_201_CREATED, responses=IDEMPOTENT)
def create_evaluation(
    body: EvaluationIn, runtime: RuntimeDep, principal: OperatorPrincipal, idempotency_key: IdempotencyKeyHeader = None
) -> JSONResponse:
    answer = submit_evaluations(
        runtime.sessions,
        runtime.bus,
        [_submission(body, runtime.settings.region)],
        render=lambda rows: EvaluationOut.model_validate(rows[0]).model_dump(mode="json"),
        batch=False,
        idempotency=_idempotency(idempotency_key, principal, "evaluations", body),
    )
    return _answered(answer)


# Up to 1,000 items: parsed and validated from the bytes in one pass.
BatchBody = JsonBody(EvaluationBatchIn)


@router.post(
    "/batch",
    response_model=EvaluationBatchOut,
    status_code=status.HTTP_201_CREATED,
    responses=IDEMPOTENT,
    openapi_extra=BatchBody.openapi,
)
def create_evaluations(
    runtime: RuntimeDep,
    # Before the body: a caller who may not submit hears 401/403, not what is wrong with the body.
    principal: OperatorPrincipal,
    body: Annotated[EvaluationBatchIn, Depends(BatchBody)],
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    """Up to 1,000 evaluations, stored all together or not at all; every invalid item is named."""
    answer = submit_evaluations(
        runtime.sessions,
        runtime.bus,
        [_submission(item, runtime.settings.region) for item in body.items],
        render=lambda rows: {"count": len(rows), "ids": [row.id for row in rows]},
        batch=True,
        idempotency=_idempotency(idempotency_key, principal, "evaluations.batch", body),
    )
    return _answered(answer)


def _submission(body: EvaluationIn, default_region: str) -> NewEvaluation:
    return NewEvaluation(
        agent_id=body.agent_id,
        environment=body.environment,
        reward=body.reward,
        region=body.region or default_region,
        episode_length=body.episode_length,
        duration_ms=body.duration_ms,
    )


def _idempotency(key: str | None, principal: Principal, scope: str, body: BaseModel) -> IdempotencyKey | None:
    if key is None:
        return None
    request_hash = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    return IdempotencyKey(key=key, principal=f"user:{principal.user_id}", scope=scope, request_hash=request_hash)


def _answered(answer: Answer) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return JSONResponse(answer.body, status_code=answer.status_code, headers=headers)


DEFAULT_WINDOW = timedelta(hours=24)


async def scoped_window(
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    environment: Annotated[str | None, Query(max_length=64)] = None,
    region: Region | None = None,
    since: Annotated[datetime | None, Query(description="ISO 8601 with a time zone; default: until - 24 h")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601 with a time zone; default: now")] = None,
) -> tuple[Scope, summaries.Window]:
    """The filters summaries and series share: which evaluations, over which window."""
    check_query_times(since=since, until=until)
    end = until or utcnow()
    return Scope(agent_id, environment, region), summaries.Window(since=since or end - DEFAULT_WINDOW, until=end)


ScopedWindow = Annotated[tuple[Scope, summaries.Window], Depends(scoped_window)]


@router.get("/summary", response_model=EvaluationSummaryOut)
def summarize_evaluations(
    session: SessionDep,
    _principal: ViewerPrincipal,
    scoped: ScopedWindow,
    group_by: Annotated[
        list[str] | None, Query(description="agent_id, environment, region; default agent_id, region")
    ] = None,
) -> EvaluationSummaryOut:
    """Count, failures, reward mean/std/min/max and duration p50/p95 per group over a window, from
    the hourly rollups (and the raw rows of the partial hours at its edges)."""
    scope, window = scoped
    groups = summaries.summarize(
        session,
        scope,
        window,
        group_by if group_by is not None else ["agent_id", "region"],
    )
    return EvaluationSummaryOut(
        since=window.since, until=window.until, groups=[EvaluationGroupOut(**g) for g in groups]
    )


@router.get("/series", response_model=EvaluationSeriesOut)
def evaluation_series(
    session: SessionDep,
    _principal: ViewerPrincipal,
    scoped: ScopedWindow,
    interval: Literal["hour", "day"] = "hour",
) -> EvaluationSeriesOut:
    """The same statistics per hour or day, for charts (intervals without evaluations are left out)."""
    scope, window = scoped
    points = summaries.series(session, scope, window, interval)
    return EvaluationSeriesOut(
        since=window.since, until=window.until, interval=interval, points=[EvaluationPointOut(**p) for p in points]
    )


def _list_page(
    runtime: Runtime, where: evaluations.EvaluationFilter, limit: int, cursor: str | None
) -> evaluations.EvaluationPage:
    with runtime.sessions() as session:
        return evaluations.list_evaluations(session, where, limit=limit, cursor=cursor)


@router.get("", response_model=EvaluationPageOut)
async def list_evaluations(
    request: Request,
    runtime: RuntimeDep,
    _principal: ViewerPrincipal,
    agent_id: str | None = None,
    environment: str | None = None,
    region: Region | None = None,
    run_id: str | None = None,
    since: Annotated[datetime | None, Query(description="ISO 8601 with a time zone; inclusive")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601 with a time zone; exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    check_query_times(since=since, until=until)
    where = evaluations.EvaluationFilter(
        agent_id=agent_id, environment=environment, region=region, run_id=run_id, since=since, until=until
    )
    read_engine: AsyncEngine | None = request.app.state.read_engine
    if read_engine is not None:  # PostgreSQL: the hottest read, without a hop to the thread pool
        page = await evaluations.list_evaluations_async(read_engine, where, limit=limit, cursor=cursor)
    else:
        page = await run_in_threadpool(_list_page, runtime, where, limit, cursor)
    # The rows are the documented shape already (EvaluationPageOut); encoded straight to JSON, as
    # validating and serialising each through pydantic cost more than the query.
    items = [row._asdict() for row in page.items]
    body = orjson.dumps({"items": items, "next_cursor": page.next_cursor}, option=orjson.OPT_UTC_Z)
    return Response(body, media_type="application/json")


@router.delete(
    "/{evaluation_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {"description": "no such evaluation"}}
)
def remove_evaluation(evaluation_id: BigRowId, runtime: RuntimeDep, principal: AdminPrincipal) -> Response:
    """Delete one evaluation (a mistaken submission, say); the audit log keeps what it was."""
    delete_evaluation(runtime.sessions, runtime.bus, evaluation_id, by=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
