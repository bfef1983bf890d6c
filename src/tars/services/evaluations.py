"""Evaluations submitted by clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tars.bus.base import EventBus
from tars.domain.agents import ENVIRONMENTS
from tars.domain.audit import AuditAction
from tars.domain.errors import InvalidField, NotFound
from tars.domain.events import Event, EventType
from tars.domain.users import Principal
from tars.metrics import count_evaluation
from tars.services import audit
from tars.storage import agents, evaluations
from tars.storage.database import SessionFactory, transaction
from tars.storage.tables import EvaluationRow


@dataclass(frozen=True)
class EvaluationSubmission:
    agent_id: str
    environment: str
    reward: float
    region: str
    episode_length: int | None = None
    duration_ms: float | None = None
    status: str = "completed"


def submit_evaluation(sessions: SessionFactory, bus: EventBus, submission: EvaluationSubmission) -> EvaluationRow:
    if submission.environment not in ENVIRONMENTS:
        raise InvalidField("environment", f"unknown environment {submission.environment!r}")
    with transaction(sessions) as session:
        try:
            agents.get_agent(session, submission.agent_id)
        except NotFound:
            raise InvalidField("agent_id", f"unknown agent {submission.agent_id!r}") from None
        row = evaluations.insert_evaluation(
            session,
            agent_id=submission.agent_id,
            environment=submission.environment,
            region=submission.region,
            reward=submission.reward,
            episode_length=submission.episode_length,
            duration_ms=submission.duration_ms,
            status=submission.status,
        )
    count_evaluation(row.agent_id, row.environment, row.region, row.status, row.reward)
    bus.publish(Event(EventType.EVALUATION_CREATED, evaluation_event_data(row)))
    return row


def delete_evaluation(sessions: SessionFactory, bus: EventBus, evaluation_id: int, *, by: Principal | None) -> None:
    with transaction(sessions) as session:
        row = evaluations.get_evaluation(session, evaluation_id)
        data = evaluation_event_data(row)
        evaluations.delete_evaluation(session, row)
        audit.record(
            session,
            by,
            AuditAction.EVALUATION_DELETED,
            target=str(evaluation_id),
            details={key: data[key] for key in ("agent_id", "environment", "region", "reward", "created_at")},
        )
    bus.publish(Event(EventType.EVALUATION_DELETED, data))


def evaluation_event_data(row: EvaluationRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "agent_id": row.agent_id,
        "run_id": row.run_id,
        "environment": row.environment,
        "region": row.region,
        "reward": row.reward,
        "episode_length": row.episode_length,
        "duration_ms": row.duration_ms,
        "status": row.status,
        "created_at": row.created_at.isoformat(),
    }
