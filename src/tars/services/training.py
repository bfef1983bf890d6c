"""Starting, evaluating and cancelling runs: validate, record the run, hand the job to a worker."""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from tars.bus.base import EventBus, JobQueue
from tars.domain.agents import ALGORITHMS, check_environment
from tars.domain.audit import AuditAction
from tars.domain.errors import Conflict, InvalidField, NotFound, Unavailable
from tars.domain.events import Event, EventType
from tars.domain.hyperparameters import MemoryLimits, check_memory, validate_hyperparameters
from tars.domain.jobs import QueueStats
from tars.domain.runs import UNFINISHED, Run, RunKind, RunStatus, TrainingJob
from tars.domain.users import Principal
from tars.services import audit
from tars.services.agents import effective_hyperparameters
from tars.storage import agents, runs
from tars.storage.database import SessionFactory, transaction
from tars.storage.runs import run_record
from tars.storage.tables import TrainingRunRow
from tars.tracing.propagation import producing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingRequest:
    agent_id: str
    episodes: int | None = None
    timesteps: int | None = None
    environment: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    from_run: str | None = None


@dataclass(frozen=True)
class EvaluationRequest:
    episodes: int
    run_id: str | None = None
    agent_id: str | None = None
    seed: int | None = None


def submit_training(
    sessions: SessionFactory,
    queue: JobQueue,
    bus: EventBus,
    request: TrainingRequest,
    *,
    evaluation_episodes: int,
    limits: MemoryLimits,
    by: Principal | None,
) -> Run:
    if request.episodes is None and request.timesteps is None:
        raise InvalidField("episodes", "give episodes, timesteps or both")
    with transaction(sessions) as session:
        job, source_run_id = _training_job(session, request, evaluation_episodes, limits)
        run = runs.create_run(session, job, created_by=by.user_id if by else None, source_run_id=source_run_id)
        audit.record(
            session,
            by,
            AuditAction.TRAINING_STARTED,
            target=run.id,
            details={"agent_id": job.agent_id, "episodes": job.episodes, "timesteps": job.timesteps},
        )
        record = run_record(run)
    return _enqueue(sessions, queue, bus, job, record)


def submit_evaluation(
    sessions: SessionFactory,
    queue: JobQueue,
    bus: EventBus,
    request: EvaluationRequest,
    *,
    by: Principal | None,
) -> Run:
    """Evaluate an existing model on demand, as a run of kind ``evaluate``."""
    if (request.run_id is None) == (request.agent_id is None):
        raise InvalidField("run_id", "give exactly one of run_id and agent_id")
    with transaction(sessions) as session:
        if request.run_id is not None:
            source = _model_run(session, request.run_id, "run_id")
        else:
            assert request.agent_id is not None
            agents.get_agent(session, request.agent_id)
            found = runs.latest_model_run(session, request.agent_id)
            if found is None:
                raise InvalidField("agent_id", f"agent {request.agent_id!r} has no trained model yet")
            source = found
        job = TrainingJob(
            run_id=str(uuid.uuid4()),
            kind=RunKind.EVALUATE.value,
            agent_id=source.agent_id,
            algorithm=source.algorithm,
            environment=source.environment,
            episodes=None,
            evaluation_episodes=request.episodes,
            seed=request.seed if request.seed is not None else secrets.randbelow(2**31),
            source_model=source.model_path,
        )
        run = runs.create_run(session, job, created_by=by.user_id if by else None, source_run_id=source.id)
        audit.record(
            session,
            by,
            AuditAction.EVALUATION_STARTED,
            target=run.id,
            details={"agent_id": job.agent_id, "episodes": job.evaluation_episodes, "source_run": source.id},
        )
        record = run_record(run)
    return _enqueue(sessions, queue, bus, job, record)


def cancel_run(sessions: SessionFactory, bus: EventBus, run_id: str, *, by: Principal | None) -> Run:
    with transaction(sessions) as session:
        run = run_record(runs.request_cancel(session, run_id))
        audit.record(session, by, AuditAction.TRAINING_CANCELLED, target=run_id, details={"status": run.status})
    if run.status == RunStatus.CANCELLED.value:
        bus.publish(Event(EventType.RUN_CANCELLED, run.event_data()))
    return run


def requeue_unfinished(
    sessions: SessionFactory,
    queue: JobQueue,
    *,
    statuses: Collection[RunStatus] = UNFINISHED,
    algorithms: Collection[str] | None = None,
    already_queued: Collection[str] = (),
) -> list[str]:
    """Queue again the runs whose jobs a queue lost: an in-process queue after a restart, or Redis
    restarted without its data. ``already_queued`` are run ids whose jobs are still there."""
    with sessions() as session:
        jobs = [
            runs.job_of(session, run)
            for run in runs.unfinished_runs(session)
            if run.status in statuses
            and (algorithms is None or run.algorithm in algorithms)
            and run.id not in already_queued
        ]
    for job in jobs:
        # The request that queued it is long gone: a trace of its own from here.
        _send(queue, job, "job.requeue")
    return [job.run_id for job in jobs]


def recover_lost_jobs(sessions: SessionFactory, queue: JobQueue, algorithms: Collection[str]) -> list[str]:
    """Queue again runs the database counts as queued whose jobs Redis no longer has (it restarted
    without its data); the worker that re-creates a family's consumer group asks for this.

    Running runs are left alone: their workers still have them and record their outcome (the
    acknowledgement of a job Redis forgot is a no-op). Were such a worker to die as well, no claim
    could take its run over, as Redis no longer has the job: that run needs `tars cancel` and a
    new submission.
    """
    if not queue.holds_jobs_apart:
        raise Conflict("embedded mode keeps its job queue in this process; it has nothing to recover")
    waiting = set().union(*(queue.waiting_run_ids(algorithm) for algorithm in algorithms))
    requeued = requeue_unfinished(
        sessions, queue, statuses={RunStatus.QUEUED}, algorithms=algorithms, already_queued=waiting
    )
    if requeued:
        log.warning("the job queue had lost %d queued run(s); queued them again", len(requeued))
    return requeued


def _send(queue: JobQueue, job: TrainingJob, span_name: str) -> None:
    """Queue ``job`` under a PRODUCER span, whose context its worker continues."""
    with producing(span_name, {"tars.run_id": job.run_id, "tars.agent_id": job.agent_id}) as carrier:
        queue.enqueue(job, carrier)


def _enqueue(sessions: SessionFactory, queue: JobQueue, bus: EventBus, job: TrainingJob, run: Run) -> Run:
    try:
        _send(queue, job, "job.enqueue")
    except Exception as exc:
        # A run nobody will ever work on must not be left behind looking queued.
        with transaction(sessions) as session:
            session.delete(runs.get_run(session, job.run_id))
        raise Unavailable("the job queue is unavailable; nothing was started") from exc
    bus.publish(Event(EventType.RUN_QUEUED, run.event_data()))
    return run


def _training_job(
    session: Session, request: TrainingRequest, evaluation_episodes: int, limits: MemoryLimits
) -> tuple[TrainingJob, str | None]:
    agent = agents.get_agent(session, request.agent_id)
    environment = request.environment or agent.environment
    check_environment(agent.algorithm, environment)
    validate_hyperparameters(agent.algorithm, request.hyperparameters)
    hyperparameters = effective_hyperparameters(agent, environment, request.hyperparameters)
    check_memory(agent.algorithm, hyperparameters, limits)
    source_model, source_run_id = None, None
    if request.from_run is not None:
        source = _model_run(session, request.from_run, "from_run")
        if (source.algorithm, source.environment) != (agent.algorithm, environment):
            raise InvalidField(
                "from_run",
                f"run {source.id} trained {source.algorithm} on {source.environment}, "
                f"not {agent.algorithm} on {environment}",
            )
        source_model, source_run_id = source.model_path, source.id
    job = TrainingJob(
        run_id=str(uuid.uuid4()),
        agent_id=agent.agent_id,
        algorithm=agent.algorithm,
        environment=environment,
        episodes=request.episodes,
        timesteps=request.timesteps,
        evaluation_episodes=evaluation_episodes,
        seed=request.seed if request.seed is not None else secrets.randbelow(2**31),
        hyperparameters=hyperparameters,
        source_model=source_model,
    )
    return job, source_run_id


def _model_run(session: Session, run_id: str, field_name: str) -> TrainingRunRow:
    try:
        source = runs.get_run(session, run_id)
    except NotFound:
        raise InvalidField(field_name, f"no run {run_id!r}") from None
    if source.kind != RunKind.TRAIN.value or source.status != RunStatus.SUCCEEDED.value or not source.model_path:
        raise InvalidField(field_name, f"run {run_id} has no model: only succeeded training runs have one")
    return source


class TrainingService:
    """Starting, evaluating, cancelling and recovering runs, for the APIs: each call one use case."""

    def __init__(
        self,
        sessions: SessionFactory,
        queue: JobQueue,
        bus: EventBus,
        *,
        evaluation_episodes: int,
        limits: MemoryLimits,
    ) -> None:
        self._sessions = sessions
        self._queue = queue
        self._bus = bus
        self._evaluation_episodes = evaluation_episodes
        self._limits = limits

    def train(self, request: TrainingRequest, *, by: Principal | None) -> Run:
        return submit_training(
            self._sessions,
            self._queue,
            self._bus,
            request,
            evaluation_episodes=self._evaluation_episodes,
            limits=self._limits,
            by=by,
        )

    def evaluate(self, request: EvaluationRequest, *, by: Principal | None) -> Run:
        return submit_evaluation(self._sessions, self._queue, self._bus, request, by=by)

    def cancel(self, run_id: str, *, by: Principal | None) -> Run:
        return cancel_run(self._sessions, self._bus, run_id, by=by)

    def recover_lost_jobs(self, algorithms: Collection[str]) -> list[str]:
        unknown = sorted(set(algorithms) - set(ALGORITHMS))
        if unknown:
            raise InvalidField("algorithms", f"unknown algorithm(s) {', '.join(unknown)}")
        return recover_lost_jobs(self._sessions, self._queue, algorithms)

    def queue_stats(self) -> list[QueueStats]:
        """Per family the queue serves, read now (for metrics)."""
        return self._queue.stats()
