from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request

from tars.api.deps import Public, RuntimeDep
from tars.api.schemas import HealthOut, WorkerOut
from tars.version import VERSION

router = APIRouter(tags=["health"], dependencies=[Public])


@router.get("/health", response_model=HealthOut, response_model_exclude_none=True)
def health(request: Request, runtime: RuntimeDep) -> HealthOut:
    service: str = request.app.state.service_name
    body = HealthOut(status="ok", version=VERSION, service=service, region=runtime.settings.region)
    if request.app.state.reports_workers:
        body.workers = [WorkerOut.model_validate(asdict(status)) for status in runtime.workers.live()]
    return body
