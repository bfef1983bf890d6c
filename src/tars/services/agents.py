"""Agents as first-class objects: an algorithm, a default environment, and its own settings."""

from __future__ import annotations

from typing import Any

from tars.domain.agents import Agent, check_algorithm, check_environment
from tars.domain.audit import AuditAction
from tars.domain.errors import Conflict
from tars.domain.hyperparameters import MemoryLimits, check_memory, validate_hyperparameters
from tars.domain.tuning import tuned_defaults
from tars.domain.users import Principal
from tars.services import audit
from tars.storage import agents, runs
from tars.storage.database import SessionFactory, transaction
from tars.storage.tables import AgentRow


def effective_hyperparameters(agent: AgentRow, environment: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Tuned defaults for the environment, then the agent's own settings, then the request's."""
    return {**tuned_defaults(agent.algorithm, environment), **agent.hyperparameters, **overrides}


def agent_record(row: AgentRow) -> Agent:
    return Agent(
        agent_id=row.agent_id,
        algorithm=row.algorithm,
        environment=row.environment,
        hyperparameters=dict(row.hyperparameters),
        effective_hyperparameters=effective_hyperparameters(row, row.environment, {}),
        builtin=row.builtin,
    )


def create_agent(
    sessions: SessionFactory,
    *,
    agent_id: str,
    algorithm: str,
    environment: str,
    hyperparameters: dict[str, Any],
    limits: MemoryLimits,
) -> Agent:
    check_algorithm(algorithm)
    check_environment(algorithm, environment)
    validate_hyperparameters(algorithm, hyperparameters)
    check_memory(algorithm, {**tuned_defaults(algorithm, environment), **hyperparameters}, limits)
    with transaction(sessions) as session:
        return agent_record(agents.create_agent(session, agent_id, algorithm, environment, hyperparameters))


def update_agent(
    sessions: SessionFactory,
    agent_id: str,
    *,
    environment: str | None,
    hyperparameters: dict[str, Any] | None,
    limits: MemoryLimits,
) -> Agent:
    with transaction(sessions) as session:
        agent = agents.get_agent(session, agent_id)
        new_environment = environment or agent.environment
        new_hyperparameters = agent.hyperparameters if hyperparameters is None else hyperparameters
        check_environment(agent.algorithm, new_environment)
        validate_hyperparameters(agent.algorithm, new_hyperparameters)
        check_memory(
            agent.algorithm, {**tuned_defaults(agent.algorithm, new_environment), **new_hyperparameters}, limits
        )
        row = agents.update_agent(session, agent_id, environment=environment, hyperparameters=hyperparameters)
        return agent_record(row)


def delete_agent(sessions: SessionFactory, agent_id: str, *, by: Principal | None) -> None:
    with transaction(sessions) as session:
        agents.get_agent(session, agent_id)
        active = runs.count_active_runs(session, agent_id)
        if active:
            raise Conflict(f"agent {agent_id!r} has {active} run(s) queued or running; cancel them first")
        agents.delete_agent(session, agent_id)
        audit.record(session, by, AuditAction.AGENT_DELETED, target=agent_id)


class AgentService:
    """The agents use cases for the APIs: each opens its own unit of work and returns records."""

    def __init__(self, sessions: SessionFactory, limits: MemoryLimits) -> None:
        self._sessions = sessions
        self._limits = limits

    def list_agents(self) -> list[Agent]:
        with self._sessions() as session:
            return [agent_record(row) for row in agents.list_agents(session)]

    def get(self, agent_id: str) -> Agent:
        with self._sessions() as session:
            return agent_record(agents.get_agent(session, agent_id))

    def create(self, *, agent_id: str, algorithm: str, environment: str, hyperparameters: dict[str, Any]) -> Agent:
        return create_agent(
            self._sessions,
            agent_id=agent_id,
            algorithm=algorithm,
            environment=environment,
            hyperparameters=hyperparameters,
            limits=self._limits,
        )

    def update(self, agent_id: str, *, environment: str | None, hyperparameters: dict[str, Any] | None) -> Agent:
        return update_agent(
            self._sessions, agent_id, environment=environment, hyperparameters=hyperparameters, limits=self._limits
        )

    def delete(self, agent_id: str, *, by: Principal | None) -> None:
        delete_agent(self._sessions, agent_id, by=by)
