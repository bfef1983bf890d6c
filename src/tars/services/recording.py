"""Stores what a training process reports and tells watchers about it.

Every write is fenced by the attempt number: once another worker has taken a run over, the
earlier attempt's writes raise ``StaleAttempt`` and change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from tars.bus.base import EventBus
from tars.domain.events import Event, EventType
from tars.domain.runs import RunStatus, TrainingJob
from tars.metrics import TRAINING_EPISODES, TRAINING_RUNS, count_evaluation
from tars.services.evaluations import evaluation_event_data
from tars.services.training import run_event_data
from tars.storage import evaluations, runs
from tars.storage.database import SessionFactory, transaction
from tars.training.progress import EpisodeFinished, EvaluationFinished, ModelSaved
from tars.version import VERSION


@dataclass(frozen=True)
class Attempt:
    job: TrainingJob
    number: int


class RunRecorder:
    def __init__(self, sessions: SessionFactory, bus: EventBus, region: str) -> None:
        self._sessions = sessions
        self._bus = bus
        self._region = region

    def started(self, job: TrainingJob, worker: str) -> Attempt | None:
        """A new attempt at ``job``, or None when its run is already finished or cancelled."""
        with transaction(self._sessions) as session:
            run = runs.start_attempt(session, job.run_id, worker)
            if run is None:
                return None
            attempt = Attempt(job, run.attempts)
            data = run_event_data(run)
        self._bus.publish(Event(EventType.RUN_STARTED, {**data, "worker": worker}))
        return attempt

    def cancel_requested(self, attempt: Attempt) -> bool:
        with self._sessions() as session:
            return runs.cancel_requested(session, attempt.job.run_id)

    def episode(self, attempt: Attempt, progress: EpisodeFinished) -> None:
        job = attempt.job
        with transaction(self._sessions) as session:
            runs.record_step(
                session,
                job.run_id,
                attempt.number,
                episode=progress.episode,
                reward=progress.reward,
                length=progress.length,
                timesteps=progress.timesteps,
                metrics=progress.metrics or None,
            )
        TRAINING_EPISODES.labels(job.agent_id, VERSION).inc()
        self._bus.publish(
            Event(
                EventType.RUN_PROGRESS,
                {
                    "run_id": job.run_id,
                    "agent_id": job.agent_id,
                    "status": RunStatus.RUNNING.value,
                    "episodes": job.episodes,
                    "episodes_done": progress.episode,
                    "timesteps": job.timesteps,
                    "timesteps_done": progress.timesteps,
                    "reward": progress.reward,
                    "length": progress.length,
                    "metrics": progress.metrics,
                },
            )
        )

    def model_saved(self, attempt: Attempt, saved: ModelSaved) -> None:
        with transaction(self._sessions) as session:
            runs.fence(session, attempt.job.run_id, attempt.number, model_path=saved.path)

    def evaluation(self, attempt: Attempt, result: EvaluationFinished) -> None:
        job = attempt.job
        with transaction(self._sessions) as session:
            runs.fence(session, job.run_id, attempt.number)
            row = evaluations.insert_evaluation(
                session,
                agent_id=job.agent_id,
                run_id=job.run_id,
                environment=job.environment,
                region=self._region,
                reward=result.reward,
                episode_length=result.length,
                duration_ms=result.duration_ms,
            )
            data = evaluation_event_data(row)
        count_evaluation(job.agent_id, job.environment, self._region, row.status, row.reward)
        self._bus.publish(Event(EventType.EVALUATION_CREATED, data))

    def finished(self, attempt: Attempt, status: RunStatus, error: str | None = None) -> None:
        job = attempt.job
        with transaction(self._sessions) as session:
            run = runs.finish_run(session, job.run_id, attempt.number, status, error)
            data = {**run_event_data(run), "summary": runs.evaluation_summary(session, job.run_id)}
        TRAINING_RUNS.labels(job.agent_id, status.value, VERSION).inc()
        event_type = {
            RunStatus.SUCCEEDED: EventType.RUN_SUCCEEDED,
            RunStatus.FAILED: EventType.RUN_FAILED,
            RunStatus.CANCELLED: EventType.RUN_CANCELLED,
        }[status]
        self._bus.publish(Event(event_type, data))

    def requeued(self, attempt: Attempt) -> None:
        with transaction(self._sessions) as session:
            data = run_event_data(runs.return_to_queue(session, attempt.job.run_id, attempt.number))
        self._bus.publish(Event(EventType.RUN_QUEUED, data))
