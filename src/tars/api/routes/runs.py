from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from tars.api.deps import OperatorPrincipal, RuntimeDep, ViewerPrincipal
from tars.api.schemas import RunListOut
from tars.domain.runs import Run, RunDetail, RunStatus

router = APIRouter(prefix="/api/v1/runs", tags=["runs"])


@router.get("", response_model=RunListOut)
def list_runs(
    runtime: RuntimeDep,
    _principal: ViewerPrincipal,
    agent_id: str | None = None,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> RunListOut:
    return RunListOut(items=runtime.runs.list_runs(agent_id=agent_id, status=status, limit=limit))


@router.get("/{run_id}", response_model=RunDetail, responses={404: {"description": "no such run"}})
def get_run(run_id: str, runtime: RuntimeDep, _principal: ViewerPrincipal) -> RunDetail:
    return runtime.runs.detail(run_id)


@router.post(
    "/{run_id}/cancel",
    response_model=Run,
    responses={404: {"description": "no such run"}, 409: {"description": "already finished"}},
)
def cancel(run_id: str, runtime: RuntimeDep, principal: OperatorPrincipal) -> Run:
    return runtime.training.cancel(run_id, by=principal)


@router.get(
    "/{run_id}/model",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The SB3 checkpoint (a zip file)"},
        404: {"description": "no such run, or it has no model"},
    },
)
def download_model(run_id: str, runtime: RuntimeDep, _principal: ViewerPrincipal) -> FileResponse:
    model = runtime.runs.model_file(run_id)
    return FileResponse(model.path, media_type="application/zip", filename=model.filename)
