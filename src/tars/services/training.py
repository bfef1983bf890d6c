"""Starting training: validate, record the run, hand the job to a worker."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from tars.bus.base import EventBus, JobQueue
from tars.domain.agents import check_environment
from tars.domain.errors import Unavailable
from tars.domain.events import Event, EventType
from tars.domain.runs import TrainingJob
from tars.storage import agents, runs
from tars.storage.database import SessionFactory, transaction
from tars.storage.tables import TrainingRunRow


@dataclass(frozen=True)
class TrainingRequest:
    agent_id: str
    episodes: int
    environment: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None


def submit_training(
    sessions: SessionFactory,
    queue: JobQueue,
    bus: EventBus,
    request: TrainingRequest,
    *,
    evaluation_episodes: int,
    created_by: int | None,
) -> TrainingRunRow:
    with transaction(sessions) as session:
        job = _job_for(session, request, evaluation_episodes)
        run = runs.create_run(session, job, created_by=created_by)
    try:
        queue.enqueue(job)
    except Exception as exc:
        # A run nobody will ever train must not be left behind looking queued.
        with transaction(sessions) as session:
            session.delete(runs.get_run(session, job.run_id))
        raise Unavailable("the job queue is unavailable; nothing was started") from exc
    bus.publish(Event(EventType.RUN_QUEUED, run_event_data(run)))
    return run


def _job_for(session: Session, request: TrainingRequest, evaluation_episodes: int) -> TrainingJob:
    agent = agents.get_agent(session, request.agent_id)
    environment = request.environment or agent.environment
    check_environment(agent.algorithm, environment)
    return TrainingJob(
        run_id=str(uuid.uuid4()),
        agent_id=agent.agent_id,
        algorithm=agent.algorithm,
        environment=environment,
        episodes=request.episodes,
        evaluation_episodes=evaluation_episodes,
        seed=request.seed if request.seed is not None else secrets.randbelow(2**31),
        hyperparameters={**agent.hyperparameters, **request.hyperparameters},
    )


def run_event_data(run: TrainingRunRow) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "agent_id": run.agent_id,
        "environment": run.environment,
        "status": run.status,
        "episodes": run.episodes,
        "episodes_done": run.episodes_done,
        "error": run.error,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def requeue_unfinished(sessions: SessionFactory, queue: JobQueue) -> list[str]:
    """Queue again every run that has not finished: for an in-process queue, which a restart empties."""
    with sessions() as session:
        pending = runs.unfinished_runs(session)
        jobs = [runs.job_of(run) for run in pending]
    for job in jobs:
        queue.enqueue(job)
    return [job.run_id for job in jobs]
