from __future__ import annotations

from datetime import UTC, datetime

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
        body.workers = [
            WorkerOut(
                **{k: v for k, v in status.to_dict().items() if k not in ("last_seen", "started_at")},
                last_seen=datetime.fromtimestamp(status.last_seen, UTC),
                started_at=datetime.fromtimestamp(status.started_at, UTC),
            )
            for status in runtime.registry.workers()
        ]
    return body
