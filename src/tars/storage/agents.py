from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from tars.domain.agents import BUILTIN_AGENTS
from tars.domain.errors import Conflict, NotFound
from tars.storage.tables import AgentRow, EvaluationRow, TrainingRunRow, TrainingStepRow
from tars.storage.types import utcnow


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


def existing_agent_ids(session: Session, agent_ids: set[str]) -> set[str]:
    if not agent_ids:
        return set()
    return set(session.scalars(select(AgentRow.agent_id).where(AgentRow.agent_id.in_(agent_ids))))


def list_agents(session: Session) -> Sequence[AgentRow]:
    return session.scalars(select(AgentRow).order_by(AgentRow.agent_id)).all()


def create_agent(
    session: Session, agent_id: str, algorithm: str, environment: str, hyperparameters: dict[str, Any]
) -> AgentRow:
    if session.get(AgentRow, agent_id) is not None:
        raise Conflict(f"agent {agent_id!r} already exists")
    row = AgentRow(
        agent_id=agent_id,
        algorithm=algorithm,
        environment=environment,
        hyperparameters=dict(hyperparameters),
        builtin=False,
    )
    session.add(row)
    session.flush()
    return row


def update_agent(
    session: Session, agent_id: str, *, environment: str | None, hyperparameters: dict[str, Any] | None
) -> AgentRow:
    row = get_agent(session, agent_id)
    if environment is not None:
        row.environment = environment
    if hyperparameters is not None:
        row.hyperparameters = dict(hyperparameters)
    row.updated_at = utcnow()
    session.flush()
    return row


def delete_agent(session: Session, agent_id: str) -> None:
    """Delete an agent with its runs and steps; its evaluations stay, as history."""
    row = get_agent(session, agent_id)
    run_ids = select(TrainingRunRow.id).where(TrainingRunRow.agent_id == agent_id)
    session.execute(update(EvaluationRow).where(EvaluationRow.run_id.in_(run_ids)).values(run_id=None))
    session.execute(delete(TrainingStepRow).where(TrainingStepRow.run_id.in_(run_ids)))
    session.execute(delete(TrainingRunRow).where(TrainingRunRow.agent_id == agent_id))
    session.delete(row)
    session.flush()
