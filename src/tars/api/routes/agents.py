from __future__ import annotations

from fastapi import APIRouter, Response, status

from tars.api.deps import AdminPrincipal, OperatorPrincipal, RuntimeDep, SessionDep, ViewerPrincipal
from tars.api.errors import UNREADABLE_BODY
from tars.api.schemas import AgentIn, AgentListOut, AgentOut, AgentPatch
from tars.services import agents as agent_service
from tars.services.training import effective_hyperparameters
from tars.storage import agents
from tars.storage.tables import AgentRow

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])


def _out(row: AgentRow) -> AgentOut:
    agent = AgentOut.model_validate(row)
    agent.effective_hyperparameters = effective_hyperparameters(row, row.environment, {})
    return agent


@router.get("", response_model=AgentListOut)
def list_agents(session: SessionDep, _principal: ViewerPrincipal) -> AgentListOut:
    return AgentListOut(items=[_out(row) for row in agents.list_agents(session)])


@router.post(
    "",
    response_model=AgentOut,
    status_code=status.HTTP_201_CREATED,
    responses={**UNREADABLE_BODY, 409: {"description": "the agent exists"}},
)
def create_agent(body: AgentIn, runtime: RuntimeDep, _principal: OperatorPrincipal) -> AgentOut:
    row = agent_service.create_agent(
        runtime.sessions,
        agent_id=body.agent_id,
        algorithm=body.algorithm,
        environment=body.environment,
        hyperparameters=body.hyperparameters,
        limits=runtime.settings.memory_limits,
    )
    return _out(row)


@router.get("/{agent_id}", response_model=AgentOut, responses={404: {"description": "no such agent"}})
def get_agent(agent_id: str, session: SessionDep, _principal: ViewerPrincipal) -> AgentOut:
    return _out(agents.get_agent(session, agent_id))


@router.patch(
    "/{agent_id}", response_model=AgentOut, responses={**UNREADABLE_BODY, 404: {"description": "no such agent"}}
)
def update_agent(agent_id: str, body: AgentPatch, runtime: RuntimeDep, _principal: OperatorPrincipal) -> AgentOut:
    row = agent_service.update_agent(
        runtime.sessions,
        agent_id,
        environment=body.environment,
        hyperparameters=body.hyperparameters,
        limits=runtime.settings.memory_limits,
    )
    return _out(row)


@router.delete(
    "/{agent_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "no such agent"}, 409: {"description": "runs active"}},
)
def delete_agent(agent_id: str, runtime: RuntimeDep, principal: AdminPrincipal) -> Response:
    agent_service.delete_agent(runtime.sessions, agent_id, by=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
