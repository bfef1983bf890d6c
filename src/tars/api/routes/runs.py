from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from tars.api.deps import OperatorPrincipal, RuntimeDep, SessionDep, ViewerPrincipal
from tars.api.schemas import RunDetailOut, RunListOut, RunOut
from tars.domain.errors import NotFound
from tars.domain.runs import RunStatus
from tars.services.training import cancel_run
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


@router.get("/{run_id}", response_model=RunDetailOut, responses={404: {"description": "no such run"}})
def get_run(run_id: str, session: SessionDep, _principal: ViewerPrincipal) -> RunDetailOut:
    row = runs.get_run(session, run_id)
    detail = RunDetailOut.model_validate(row)
    detail.has_model = row.model_path is not None
    detail.rewards = runs.step_rewards(session, run_id)
    detail.metrics = runs.latest_metrics(session, run_id)
    detail.evaluation = runs.evaluation_summary(session, run_id)
    return detail


@router.post(
    "/{run_id}/cancel",
    response_model=RunOut,
    responses={404: {"description": "no such run"}, 409: {"description": "already finished"}},
)
def cancel(run_id: str, runtime: RuntimeDep, principal: OperatorPrincipal) -> RunOut:
    return RunOut.model_validate(cancel_run(runtime.sessions, runtime.bus, run_id, by=principal))


@router.get(
    "/{run_id}/model",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The SB3 checkpoint (a zip file)"},
        404: {"description": "no such run, or it has no model"},
    },
)
def download_model(run_id: str, session: SessionDep, _principal: ViewerPrincipal) -> FileResponse:
    row = runs.get_run(session, run_id)
    if row.model_path is None or not Path(row.model_path).is_file():
        raise NotFound("model of run", run_id)
    return FileResponse(row.model_path, media_type="application/zip", filename=f"{row.agent_id}-{run_id}.zip")
