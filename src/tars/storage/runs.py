"""Training runs and their per-episode steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from tars.domain.errors import NotFound
from tars.domain.runs import RunStatus, TrainingJob
from tars.storage.tables import EvaluationRow, TrainingRunRow, TrainingStepRow
from tars.storage.types import utcnow


def create_run(session: Session, job: TrainingJob, *, created_by: int | None) -> TrainingRunRow:
    row = TrainingRunRow(
        id=job.run_id,
        agent_id=job.agent_id,
        algorithm=job.algorithm,
        environment=job.environment,
        episodes=job.episodes,
        evaluation_episodes=job.evaluation_episodes,
        seed=job.seed,
        hyperparameters=dict(job.hyperparameters),
        status=RunStatus.QUEUED.value,
        episodes_done=0,
        attempts=0,
        created_by=created_by,
    )
    session.add(row)
    session.flush()
    return row


def get_run(session: Session, run_id: str) -> TrainingRunRow:
    row = session.get(TrainingRunRow, run_id)
    if row is None:
        raise NotFound("run", run_id)
    return row


def list_runs(
    session: Session, *, agent_id: str | None = None, status: RunStatus | None = None, limit: int = 50
) -> Sequence[TrainingRunRow]:
    query = select(TrainingRunRow).order_by(TrainingRunRow.created_at.desc(), TrainingRunRow.id.desc())
    if agent_id is not None:
        query = query.where(TrainingRunRow.agent_id == agent_id)
    if status is not None:
        query = query.where(TrainingRunRow.status == status.value)
    return session.scalars(query.limit(limit)).all()


def unfinished_runs(session: Session) -> Sequence[TrainingRunRow]:
    unfinished = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
    query = select(TrainingRunRow).where(TrainingRunRow.status.in_(unfinished)).order_by(TrainingRunRow.created_at)
    return session.scalars(query).all()


def job_of(run: TrainingRunRow) -> TrainingJob:
    return TrainingJob(
        run_id=run.id,
        agent_id=run.agent_id,
        algorithm=run.algorithm,
        environment=run.environment,
        episodes=run.episodes,
        evaluation_episodes=run.evaluation_episodes,
        seed=run.seed,
        hyperparameters=dict(run.hyperparameters),
    )


def start_attempt(session: Session, run_id: str, worker: str) -> TrainingRunRow:
    """Mark a run running on ``worker``, discarding what an earlier, unfinished attempt wrote.

    A job re-delivered after its worker died starts over from scratch, so its steps and
    evaluations are never counted twice.
    """
    row = get_run(session, run_id)
    session.execute(delete(TrainingStepRow).where(TrainingStepRow.run_id == run_id))
    session.execute(delete(EvaluationRow).where(EvaluationRow.run_id == run_id))
    row.status = RunStatus.RUNNING.value
    row.worker = worker
    row.attempts += 1
    row.episodes_done = 0
    row.error = None
    row.started_at = utcnow()
    row.finished_at = None
    session.flush()
    return row


def record_step(session: Session, run_id: str, *, episode: int, reward: float, length: int, timesteps: int) -> None:
    session.add(TrainingStepRow(run_id=run_id, episode=episode, reward=reward, length=length, timesteps=timesteps))
    session.execute(update(TrainingRunRow).where(TrainingRunRow.id == run_id).values(episodes_done=episode))


def finish_run(session: Session, run_id: str, status: RunStatus, error: str | None = None) -> TrainingRunRow:
    row = get_run(session, run_id)
    row.status = status.value
    row.error = error
    row.finished_at = utcnow()
    session.flush()
    return row


def step_rewards(session: Session, run_id: str) -> list[float]:
    query = select(TrainingStepRow.reward).where(TrainingStepRow.run_id == run_id).order_by(TrainingStepRow.episode)
    return list(session.scalars(query))


def evaluation_summary(session: Session, run_id: str) -> dict[str, Any] | None:
    query = select(
        func.count(EvaluationRow.id),
        func.avg(EvaluationRow.reward),
        func.min(EvaluationRow.reward),
        func.max(EvaluationRow.reward),
        func.avg(EvaluationRow.episode_length),
    ).where(EvaluationRow.run_id == run_id)
    count, mean, low, high, mean_length = session.execute(query).one()
    if not count:
        return None
    return {
        "episodes": int(count),
        "mean_reward": float(mean),
        "min_reward": float(low),
        "max_reward": float(high),
        "mean_length": float(mean_length) if mean_length is not None else None,
    }
