"""The insight engine's checkpoints, and what it reads back of evaluations and training episodes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from tars.domain.evaluations import Evaluation, Position
from tars.domain.insight_feed import FeedCheckpoint, RecordedEpisode, RunFacts
from tars.domain.progress import EpisodeFinished
from tars.domain.runs import UNFINISHED, RunStatus
from tars.storage.tables import (
    AgentRow,
    EvaluationRow,
    InsightCheckpointRow,
    TrainingRunRow,
    TrainingStepRow,
    evaluation_rollups,
)
from tars.storage.types import utcnow


def agent_ids(session: Session) -> list[str]:
    return list(session.scalars(select(AgentRow.agent_id).order_by(AgentRow.agent_id)))


def _checkpoint(row: InsightCheckpointRow) -> FeedCheckpoint:
    position = None
    if row.last_evaluation_id is not None and row.last_evaluation_at is not None:
        position = Position(row.last_evaluation_at, row.last_evaluation_id)
    return FeedCheckpoint(
        agent_id=row.agent_id,
        last_event_id=row.last_event_id,
        last_evaluation=position,
        evaluations_processed=row.evaluations_processed,
        runs={str(run): int(episode) for run, episode in (row.runs or {}).items()},
        epoch=row.epoch,
        owner=row.owner,
        updated_at=row.updated_at,
    )


def checkpoints(session: Session, agents: Iterable[str] | None = None) -> dict[str, FeedCheckpoint]:
    query = select(InsightCheckpointRow)
    if agents is not None:
        query = query.where(InsightCheckpointRow.agent_id.in_(list(agents)))
    return {row.agent_id: _checkpoint(row) for row in session.scalars(query)}


def claim(session: Session, agent_id: str, owner: str, channel_end: int) -> tuple[FeedCheckpoint, bool]:
    """Take the agent's checkpoint for ``owner``: its epoch raised, so whoever held it before can no
    longer write it. Made at ``channel_end`` if the agent has none; says whether it was made now."""
    row = session.get(InsightCheckpointRow, agent_id, with_for_update=True)
    if row is None:
        row = InsightCheckpointRow(
            agent_id=agent_id,
            last_event_id=channel_end,
            last_evaluation_id=None,
            last_evaluation_at=None,
            evaluations_processed=0,
            runs={},
            epoch=1,
            owner=owner,
            updated_at=utcnow(),
        )
        session.add(row)
        session.flush()
        return _checkpoint(row), True
    row.epoch += 1
    row.owner = owner
    row.updated_at = utcnow()
    session.flush()
    return _checkpoint(row), False


def save(session: Session, checkpoint: FeedCheckpoint) -> bool:
    """Write ``checkpoint`` if its epoch is still the agent's; False if another replica took it."""
    position = checkpoint.last_evaluation
    result: Any = session.execute(
        update(InsightCheckpointRow)
        .where(InsightCheckpointRow.agent_id == checkpoint.agent_id, InsightCheckpointRow.epoch == checkpoint.epoch)
        .values(
            last_event_id=checkpoint.last_event_id,
            last_evaluation_id=position.id if position else None,
            last_evaluation_at=position.created_at if position else None,
            evaluations_processed=checkpoint.evaluations_processed,
            runs=checkpoint.runs,
            updated_at=utcnow(),
        )
    )
    return bool(result.rowcount)


def release(session: Session, agent_id: str, owner: str, epoch: int) -> None:
    session.execute(
        update(InsightCheckpointRow)
        .where(InsightCheckpointRow.agent_id == agent_id, InsightCheckpointRow.epoch == epoch)
        .where(InsightCheckpointRow.owner == owner)
        .values(owner=None)
    )


def _after(position: Position) -> Any:
    return or_(
        EvaluationRow.created_at > position.created_at,
        and_(EvaluationRow.created_at == position.created_at, EvaluationRow.id > position.id),
    )


def _up_to(position: Position) -> Any:
    return or_(
        EvaluationRow.created_at < position.created_at,
        and_(EvaluationRow.created_at == position.created_at, EvaluationRow.id <= position.id),
    )


def evaluations_after(session: Session, agent_id: str, after: Position | None, limit: int) -> list[Evaluation]:
    """Up to ``limit`` of the agent's evaluations after ``after`` (all, if None), oldest first."""
    query = select(*EvaluationRow.__table__.c).where(EvaluationRow.agent_id == agent_id)
    if after is not None:
        query = query.where(_after(after))
    query = query.order_by(EvaluationRow.created_at, EvaluationRow.id).limit(limit)
    return [Evaluation(*row) for row in session.execute(query)]


def subjects(session: Session, agent_id: str) -> list[tuple[str, str]]:
    """The (environment, region) pairs the agent has evaluations in, from the hourly rollups: the
    evaluations table would be scanned for them."""
    query = (
        select(evaluation_rollups.c.environment, evaluation_rollups.c.region)
        .where(evaluation_rollups.c.agent_id == agent_id)
        .distinct()
        .order_by(evaluation_rollups.c.environment, evaluation_rollups.c.region)
    )
    return [(str(environment), str(region)) for environment, region in session.execute(query)]


def recent_evaluations(
    session: Session, agent_id: str, environment: str, region: str, up_to: Position | None, limit: int
) -> list[Evaluation]:
    """The latest ``limit`` evaluations of one subject at or before ``up_to`` (all, if None), oldest first."""
    query = select(*EvaluationRow.__table__.c).where(
        EvaluationRow.agent_id == agent_id, EvaluationRow.region == region, EvaluationRow.environment == environment
    )
    if up_to is not None:
        query = query.where(_up_to(up_to))
    query = query.order_by(EvaluationRow.created_at.desc(), EvaluationRow.id.desc()).limit(limit)
    rows = [Evaluation(*row) for row in session.execute(query)]
    rows.reverse()
    return rows


def _facts(row: TrainingRunRow) -> RunFacts:
    return RunFacts(row.id, row.agent_id, row.environment, row.source_run_id, row.status, row.finished_at)


def run_facts(session: Session, run_ids: Iterable[str]) -> dict[str, RunFacts]:
    query = select(TrainingRunRow).where(TrainingRunRow.id.in_(list(run_ids)))
    return {row.id: _facts(row) for row in session.scalars(query)}


def runs_since(session: Session, agent_id: str, since: datetime | None) -> list[RunFacts]:
    """The agent's runs that were unfinished at ``since`` or started after it (every run, if None)."""
    query = select(TrainingRunRow).where(TrainingRunRow.agent_id == agent_id)
    if since is not None:
        query = query.where(
            or_(
                TrainingRunRow.status.in_([status.value for status in UNFINISHED]),
                TrainingRunRow.finished_at >= since,
            )
        )
    return [_facts(row) for row in session.scalars(query.order_by(TrainingRunRow.created_at))]


def episodes(session: Session, run_id: str, after: int, up_to: int | None = None) -> list[RecordedEpisode]:
    """A run's episodes numbered after ``after`` (and at most ``up_to``), in order."""
    query = select(TrainingStepRow).where(TrainingStepRow.run_id == run_id, TrainingStepRow.episode > after)
    if up_to is not None:
        query = query.where(TrainingStepRow.episode <= up_to)
    return [
        RecordedEpisode(
            run_id,
            EpisodeFinished(
                episode=row.episode,
                reward=row.reward,
                length=row.length,
                timesteps=row.timesteps,
                metrics=dict(row.metrics or {}),
                non_finite=tuple(row.non_finite or ()),
            ),
            row.created_at,
        )
        for row in session.scalars(query.order_by(TrainingStepRow.episode))
    ]


def throughput_history(session: Session, agent_id: str, limit: int) -> list[float]:
    """The env-steps/s each of the agent's latest ``limit`` successful runs ended with, oldest first."""
    finished = list(
        session.scalars(
            select(TrainingRunRow.id)
            .where(TrainingRunRow.agent_id == agent_id, TrainingRunRow.status == RunStatus.SUCCEEDED.value)
            .order_by(TrainingRunRow.finished_at.desc())
            .limit(limit)
        )
    )
    speeds = []
    for run_id in reversed(finished):
        metrics = session.scalar(
            select(TrainingStepRow.metrics)
            .where(TrainingStepRow.run_id == run_id, TrainingStepRow.metrics.is_not(None))
            .order_by(TrainingStepRow.episode.desc())
            .limit(1)
        )
        speed = (metrics or {}).get("steps_per_second")
        if isinstance(speed, int | float):
            speeds.append(float(speed))
    return speeds
