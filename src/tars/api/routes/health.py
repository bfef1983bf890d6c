from __future__ import annotations

from fastapi import APIRouter, Request

from tars.api.deps import RuntimeDep
from tars.api.schemas import HealthOut
from tars.version import VERSION

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut)
def health(request: Request, runtime: RuntimeDep) -> HealthOut:
    return HealthOut(
        status="ok", version=VERSION, service=request.app.state.service_name, region=runtime.settings.region
    )
