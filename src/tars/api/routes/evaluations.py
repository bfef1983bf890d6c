from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from tars.api.deps import AdminPrincipal, OperatorPrincipal, RuntimeDep, SessionDep, ViewerPrincipal
from tars.api.errors import UNREADABLE_BODY
from tars.api.schemas import BigRowId, EvaluationIn, EvaluationOut, EvaluationPageOut, Region, check_query_times
from tars.services.evaluations import EvaluationSubmission, delete_evaluation, submit_evaluation
from tars.storage import evaluations

router = APIRouter(prefix="/api/v1/evaluations", tags=["evaluations"])


@router.post("", response_model=EvaluationOut, status_code=status.HTTP_201_CREATED, responses=UNREADABLE_BODY)
def create_evaluation(body: EvaluationIn, runtime: RuntimeDep, _principal: OperatorPrincipal) -> EvaluationOut:
    row = submit_evaluation(
        runtime.sessions,
        runtime.bus,
        EvaluationSubmission(
            agent_id=body.agent_id,
            environment=body.environment,
            reward=body.reward,
            region=body.region or runtime.settings.region,
            episode_length=body.episode_length,
            duration_ms=body.duration_ms,
        ),
    )
    return EvaluationOut.model_validate(row)


@router.get("", response_model=EvaluationPageOut)
def list_evaluations(
    session: SessionDep,
    _principal: ViewerPrincipal,
    agent_id: str | None = None,
    environment: str | None = None,
    region: Region | None = None,
    run_id: str | None = None,
    since: Annotated[datetime | None, Query(description="ISO 8601 with a time zone; inclusive")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601 with a time zone; exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> EvaluationPageOut:
    check_query_times(since=since, until=until)
    page = evaluations.list_evaluations(
        session,
        evaluations.EvaluationFilter(
            agent_id=agent_id, environment=environment, region=region, run_id=run_id, since=since, until=until
        ),
        limit=limit,
        cursor=cursor,
    )
    return EvaluationPageOut(items=[EvaluationOut.model_validate(r) for r in page.items], next_cursor=page.next_cursor)


@router.delete(
    "/{evaluation_id}", status_code=status.HTTP_204_NO_CONTENT, responses={404: {"description": "no such evaluation"}}
)
def remove_evaluation(evaluation_id: BigRowId, runtime: RuntimeDep, principal: AdminPrincipal) -> Response:
    """Delete one evaluation (a mistaken submission, say); the audit log keeps what it was."""
    delete_evaluation(runtime.sessions, runtime.bus, evaluation_id, by=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
