from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tars.api.deps import SessionDep, ViewerPrincipal
from tars.api.schemas import RunDetailOut, RunListOut, RunOut
from tars.domain.runs import RunStatus
from tars.storage import runs

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])


@router.get("", response_model=RunListOut)
def list_runs(
    session: SessionDep,
    _principal: ViewerPrincipal,
    agent_id: str | None = None,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> RunListOut:
    rows = runs.list_runs(session, agent_id=agent_id, status=status, limit=limit)
    return RunListOut(items=[RunOut.model_validate(row) for row in rows])


@router.get("/{run_id}", response_model=RunDetailOut)
def get_run(run_id: str, session: SessionDep, _principal: ViewerPrincipal) -> RunDetailOut:
    row = runs.get_run(session, run_id)
    detail = RunDetailOut.model_validate(row)
    detail.rewards = runs.step_rewards(session, run_id)
    detail.evaluation = runs.evaluation_summary(session, run_id)
    return detail
