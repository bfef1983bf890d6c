from __future__ import annotations

from fastapi import APIRouter

from tars.api.deps import SessionDep, ViewerPrincipal
from tars.api.schemas import AgentListOut, AgentOut
from tars.storage import agents

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])


@router.get("", response_model=AgentListOut)
def list_agents(session: SessionDep, _principal: ViewerPrincipal) -> AgentListOut:
    return AgentListOut(items=[AgentOut.model_validate(row) for row in agents.list_agents(session)])


@router.get("/{agent_id}", response_model=AgentOut)
def get_agent(agent_id: str, session: SessionDep, _principal: ViewerPrincipal) -> AgentOut:
    return AgentOut.model_validate(agents.get_agent(session, agent_id))
