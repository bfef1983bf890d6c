from __future__ import annotations

from fastapi import APIRouter, Response, status

from tars.api.deps import AdminPrincipal, OperatorPrincipal, RuntimeDep, ViewerPrincipal
from tars.api.errors import UNREADABLE_BODY
from tars.api.schemas import AgentIn, AgentListOut, AgentPatch
from tars.domain.agents import Agent

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])


@router.get("", response_model=AgentListOut)
def list_agents(runtime: RuntimeDep, _principal: ViewerPrincipal) -> AgentListOut:
    return AgentListOut(items=runtime.agents.list_agents())


@router.post(
    "",
    response_model=Agent,
    status_code=status.HTTP_201_CREATED,
    responses={**UNREADABLE_BODY, 409: {"description": "the agent exists"}},
)
def create_agent(body: AgentIn, runtime: RuntimeDep, _principal: OperatorPrincipal) -> Agent:
    return runtime.agents.create(
        agent_id=body.agent_id,
        algorithm=body.algorithm,
        environment=body.environment,
        hyperparameters=body.hyperparameters,
    )


@router.get("/{agent_id}", response_model=Agent, responses={404: {"description": "no such agent"}})
def get_agent(agent_id: str, runtime: RuntimeDep, _principal: ViewerPrincipal) -> Agent:
    return runtime.agents.get(agent_id)


@router.patch("/{agent_id}", response_model=Agent, responses={**UNREADABLE_BODY, 404: {"description": "no such agent"}})
def update_agent(agent_id: str, body: AgentPatch, runtime: RuntimeDep, _principal: OperatorPrincipal) -> Agent:
    return runtime.agents.update(agent_id, environment=body.environment, hyperparameters=body.hyperparameters)


@router.delete(
    "/{agent_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "no such agent"}, 409: {"description": "runs active"}},
)
def delete_agent(agent_id: str, runtime: RuntimeDep, principal: AdminPrincipal) -> Response:
    runtime.agents.delete(agent_id, by=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
