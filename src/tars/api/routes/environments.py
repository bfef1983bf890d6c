from __future__ import annotations

from fastapi import APIRouter

from tars.api.deps import ViewerPrincipal
from tars.api.schemas import EnvironmentListOut, EnvironmentOut
from tars.domain.agents import ENVIRONMENTS, algorithms_for

router = APIRouter(prefix="/api/v1/environments", tags=["agents"])


@router.get("", response_model=EnvironmentListOut)
def list_environments(_principal: ViewerPrincipal) -> EnvironmentListOut:
    return EnvironmentListOut(
        items=[
            EnvironmentOut(environment=name, action_space=space.value, algorithms=algorithms_for(name))
            for name, space in ENVIRONMENTS.items()
        ]
    )
