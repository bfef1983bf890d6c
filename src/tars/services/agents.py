"""Agents as first-class objects: an algorithm, a default environment, and its own settings."""

from __future__ import annotations

from typing import Any

from tars.domain.agents import check_algorithm, check_environment
from tars.domain.audit import AuditAction
from tars.domain.errors import Conflict
from tars.domain.hyperparameters import MemoryLimits, check_memory, validate_hyperparameters
from tars.domain.tuning import tuned_defaults
from tars.domain.users import Principal
from tars.services import audit
from tars.storage import agents, runs
from tars.storage.database import SessionFactory, transaction
from tars.storage.tables import AgentRow


def create_agent(
    sessions: SessionFactory,
    *,
    agent_id: str,
    algorithm: str,
    environment: str,
    hyperparameters: dict[str, Any],
    limits: MemoryLimits,
) -> AgentRow:
    check_algorithm(algorithm)
    check_environment(algorithm, environment)
    validate_hyperparameters(algorithm, hyperparameters)
    check_memory(algorithm, {**tuned_defaults(algorithm, environment), **hyperparameters}, limits)
    with transaction(sessions) as session:
        return agents.create_agent(session, agent_id, algorithm, environment, hyperparameters)


def update_agent(
    sessions: SessionFactory,
    agent_id: str,
    *,
    environment: str | None,
    hyperparameters: dict[str, Any] | None,
    limits: MemoryLimits,
) -> AgentRow:
    with transaction(sessions) as session:
        agent = agents.get_agent(session, agent_id)
        new_environment = environment or agent.environment
        new_hyperparameters = agent.hyperparameters if hyperparameters is None else hyperparameters
        check_environment(agent.algorithm, new_environment)
        validate_hyperparameters(agent.algorithm, new_hyperparameters)
        check_memory(
            agent.algorithm, {**tuned_defaults(agent.algorithm, new_environment), **new_hyperparameters}, limits
        )
        return agents.update_agent(session, agent_id, environment=environment, hyperparameters=hyperparameters)


def delete_agent(sessions: SessionFactory, agent_id: str, *, by: Principal | None) -> None:
    with transaction(sessions) as session:
        agents.get_agent(session, agent_id)
        active = runs.count_active_runs(session, agent_id)
        if active:
            raise Conflict(f"agent {agent_id!r} has {active} run(s) queued or running; cancel them first")
        agents.delete_agent(session, agent_id)
        audit.record(session, by, AuditAction.AGENT_DELETED, target=agent_id)
