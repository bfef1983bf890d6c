from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from tars.domain.agents import BUILTIN_AGENTS
from tars.domain.errors import NotFound
from tars.storage.tables import AgentRow


def ensure_builtin_agents(session: Session) -> None:
    """Insert the built-in agents that are missing; leaves edited ones alone."""
    existing = set(session.scalars(select(AgentRow.agent_id)))
    for spec in BUILTIN_AGENTS:
        if spec.agent_id not in existing:
            session.add(
                AgentRow(
                    agent_id=spec.agent_id,
                    algorithm=spec.algorithm,
                    environment=spec.environment,
                    hyperparameters=dict(spec.hyperparameters),
                    builtin=True,
                )
            )


def get_agent(session: Session, agent_id: str) -> AgentRow:
    row = session.get(AgentRow, agent_id)
    if row is None:
        raise NotFound("agent", agent_id)
    return row


def list_agents(session: Session) -> Sequence[AgentRow]:
    return session.scalars(select(AgentRow).order_by(AgentRow.agent_id)).all()
