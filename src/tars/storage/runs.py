"""Training runs and their per-episode steps."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Update, delete, func, select, update
from sqlalchemy.orm import Session

from tars.domain.errors import Conflict, NotFound
from tars.domain.runs import MAX_ATTEMPTS, UNFINISHED, Run, RunKind, RunStatus, StaleAttempt, TrainingJob
from tars.storage import evaluations
from tars.storage.tables import EvaluationRow, TrainingRunRow, TrainingStepRow
from tars.storage.types import utcnow


def create_run(
    session: Session, job: TrainingJob, *, created_by: int | None, source_run_id: str | None = None
) -> TrainingRunRow:
    row = TrainingRunRow(
        id=job.run_id,
        kind=job.kind,
        timesteps=job.timesteps,
        timesteps_done=0,
        source_run_id=source_run_id,
        cancel_requested=False,
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
    unfinished = [status.value for status in UNFINISHED]
    query = select(TrainingRunRow).where(TrainingRunRow.status.in_(unfinished)).order_by(TrainingRunRow.created_at)
    return session.scalars(query).all()


def job_of(session: Session, run: TrainingRunRow) -> TrainingJob:
    source_model = get_run(session, run.source_run_id).model_path if run.source_run_id else None
    return TrainingJob(
        run_id=run.id,
        kind=run.kind,
        agent_id=run.agent_id,
        algorithm=run.algorithm,
        environment=run.environment,
        episodes=run.episodes,
        timesteps=run.timesteps,
        evaluation_episodes=run.evaluation_episodes,
        seed=run.seed,
        hyperparameters=dict(run.hyperparameters),
        source_model=source_model,
    )


def start_attempt(session: Session, run_id: str, worker: str) -> TrainingRunRow | None:
    """Mark a run running on ``worker`` as a new attempt, discarding what an unfinished one wrote.

    A job re-delivered after its worker died starts over, so its steps and evaluations are
    never counted twice. Returns None for a run that is already finished or cancelled: its job
    is a leftover delivery with nothing to do.
    """
    row = session.get(TrainingRunRow, run_id, with_for_update=True)
    if row is None or RunStatus(row.status).finished:
        return None
    if row.attempts >= MAX_ATTEMPTS:
        # A job that keeps losing its worker (or crashing it) must not loop forever.
        row.status = RunStatus.FAILED.value
        row.error = f"gave up after {row.attempts} attempts"
        row.finished_at = utcnow()
        return None
    session.execute(delete(TrainingStepRow).where(TrainingStepRow.run_id == run_id))
    evaluations.delete_run_evaluations(session, run_id)
    row.status = RunStatus.RUNNING.value
    row.worker = worker
    row.attempts += 1
    row.episodes_done = 0
    row.timesteps_done = 0
    row.model_path = None
    row.error = None
    row.started_at = utcnow()
    row.finished_at = None
    session.flush()
    return row


def fence(session: Session, run_id: str, attempt: int, **values: Any) -> None:
    """Update the run only if ``attempt`` still owns it; otherwise raise StaleAttempt.

    The update takes the row lock, so a takeover by another worker and this attempt's writes
    are serialised: after a takeover, nothing this attempt writes is committed.
    """
    result = session.execute(_owned(run_id, attempt).values(**(values or {"attempts": TrainingRunRow.attempts})))
    if getattr(result, "rowcount", 0) != 1:
        raise StaleAttempt(f"run {run_id}: attempt {attempt} no longer owns it")


def _owned(run_id: str, attempt: int) -> Update:
    """An UPDATE of the run that matches only while ``attempt`` owns it and it runs."""
    return update(TrainingRunRow).where(
        TrainingRunRow.id == run_id,
        TrainingRunRow.attempts == attempt,
        TrainingRunRow.status == RunStatus.RUNNING.value,
    )


class ReportTarget(NamedTuple):
    """What recording a report needs to know of its run beyond the request: read by the fence itself."""

    agent_id: str
    environment: str
    episodes: int | None
    timesteps: int | None


def fence_for_report(session: Session, run_id: str, attempt: int) -> ReportTarget:
    """``fence`` without changing anything, returning what the report's rows and events name."""
    found = session.execute(
        _owned(run_id, attempt)
        .values(attempts=TrainingRunRow.attempts)
        .returning(
            TrainingRunRow.agent_id, TrainingRunRow.environment, TrainingRunRow.episodes, TrainingRunRow.timesteps
        )
    ).one_or_none()
    if found is None:
        raise StaleAttempt(f"run {run_id}: attempt {attempt} no longer owns it")
    return ReportTarget(*found)


def run_exists(session: Session, run_id: str) -> bool:
    return session.scalar(select(TrainingRunRow.id).where(TrainingRunRow.id == run_id)) is not None


def record_steps(session: Session, run_id: str, attempt: int, steps: Sequence[dict[str, Any]]) -> None:
    """Episodes in order (episode, reward, length, timesteps, metrics), fenced by ``attempt``."""
    if not steps:
        return
    last = steps[-1]
    fence(session, run_id, attempt, episodes_done=last["episode"], timesteps_done=last["timesteps"])
    session.add_all(TrainingStepRow(run_id=run_id, **step) for step in steps)


def left_by(session: Session, run_id: str, attempt: int, status: RunStatus) -> bool:
    """Whether ``attempt`` already left the run in ``status``: a repeated report of how it ended."""
    row = session.get(TrainingRunRow, run_id)
    return row is not None and row.attempts == attempt and row.status == status.value


def finish_run(
    session: Session, run_id: str, attempt: int, status: RunStatus, error: str | None = None
) -> TrainingRunRow:
    fence(session, run_id, attempt, status=status.value, error=error, finished_at=utcnow())
    return get_run(session, run_id)


def return_to_queue(session: Session, run_id: str, attempt: int) -> TrainingRunRow:
    fence(session, run_id, attempt, status=RunStatus.QUEUED.value)
    return get_run(session, run_id)


def request_cancel(session: Session, run_id: str) -> TrainingRunRow:
    """Cancel a queued run at once; ask the worker of a running one to stop it."""
    row = session.get(TrainingRunRow, run_id, with_for_update=True)
    if row is None:
        raise NotFound("run", run_id)
    status = RunStatus(row.status)
    if status.finished:
        raise Conflict(f"run {run_id} is already {status.value}")
    if status is RunStatus.QUEUED:
        row.status = RunStatus.CANCELLED.value
        row.finished_at = utcnow()
    row.cancel_requested = True
    session.flush()
    return row


def cancel_requested(session: Session, run_id: str) -> bool:
    found = session.scalar(select(TrainingRunRow.cancel_requested).where(TrainingRunRow.id == run_id))
    if found is None:
        raise NotFound("run", run_id)
    return bool(found)


def latest_model_run(session: Session, agent_id: str) -> TrainingRunRow | None:
    query = (
        select(TrainingRunRow)
        .where(
            TrainingRunRow.agent_id == agent_id,
            TrainingRunRow.kind == RunKind.TRAIN.value,
            TrainingRunRow.status == RunStatus.SUCCEEDED.value,
            TrainingRunRow.model_path.is_not(None),
        )
        .order_by(TrainingRunRow.finished_at.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def count_active_runs(session: Session, agent_id: str) -> int:
    unfinished = [status.value for status in UNFINISHED]
    query = select(func.count(TrainingRunRow.id)).where(
        TrainingRunRow.agent_id == agent_id, TrainingRunRow.status.in_(unfinished)
    )
    return int(session.scalar(query) or 0)


def step_rewards(session: Session, run_id: str) -> list[float]:
    query = select(TrainingStepRow.reward).where(TrainingStepRow.run_id == run_id).order_by(TrainingStepRow.episode)
    return list(session.scalars(query))


def latest_metrics(session: Session, run_id: str) -> dict[str, float] | None:
    query = (
        select(TrainingStepRow.metrics)
        .where(TrainingStepRow.run_id == run_id, TrainingStepRow.metrics.is_not(None))
        .order_by(TrainingStepRow.episode.desc())
        .limit(1)
    )
    metrics = session.scalar(query)
    return dict(metrics) if metrics else None


def evaluation_summary(session: Session, run_id: str) -> dict[str, Any] | None:
    """Mean, std, min, max reward and mean length of a run's evaluation episodes."""
    rows = session.execute(
        select(EvaluationRow.reward, EvaluationRow.episode_length).where(EvaluationRow.run_id == run_id)
    ).all()
    if not rows:
        return None
    rewards = [float(reward) for reward, _ in rows]
    lengths = [int(length) for _, length in rows if length is not None]
    return {
        "episodes": len(rewards),
        "mean_reward": statistics.fmean(rewards),
        "std_reward": statistics.pstdev(rewards),
        "min_reward": min(rewards),
        "max_reward": max(rewards),
        "mean_length": statistics.fmean(lengths) if lengths else None,
    }


def run_record(row: TrainingRunRow) -> Run:
    """A run as the services hand it out (no ORM row leaves the services)."""
    return Run(
        run_id=row.id,
        kind=row.kind,
        agent_id=row.agent_id,
        algorithm=row.algorithm,
        environment=row.environment,
        status=row.status,
        episodes=row.episodes,
        episodes_done=row.episodes_done,
        timesteps=row.timesteps,
        timesteps_done=row.timesteps_done,
        source_run_id=row.source_run_id,
        cancel_requested=row.cancel_requested,
        evaluation_episodes=row.evaluation_episodes,
        seed=row.seed,
        hyperparameters=dict(row.hyperparameters),
        attempts=row.attempts,
        worker=row.worker,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )
