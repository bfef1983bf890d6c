"""Stores what a training process reports and tells watchers about it."""

from __future__ import annotations

from tars.bus.base import EventBus
from tars.domain.events import Event, EventType
from tars.domain.runs import RunStatus, TrainingJob
from tars.metrics import TRAINING_EPISODES, TRAINING_RUNS, count_evaluation
from tars.services.evaluations import evaluation_event_data
from tars.services.training import run_event_data
from tars.storage import evaluations, runs
from tars.storage.database import SessionFactory, transaction
from tars.training.progress import EpisodeFinished, EvaluationFinished
from tars.version import VERSION


class RunRecorder:
    def __init__(self, sessions: SessionFactory, bus: EventBus, region: str) -> None:
        self._sessions = sessions
        self._bus = bus
        self._region = region

    def started(self, job: TrainingJob, worker: str) -> None:
        with transaction(self._sessions) as session:
            run = runs.start_attempt(session, job.run_id, worker)
            data = run_event_data(run)
        self._bus.publish(Event(EventType.RUN_STARTED, {**data, "worker": worker}))

    def episode(self, job: TrainingJob, progress: EpisodeFinished) -> None:
        with transaction(self._sessions) as session:
            runs.record_step(
                session,
                job.run_id,
                episode=progress.episode,
                reward=progress.reward,
                length=progress.length,
                timesteps=progress.timesteps,
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
                    "reward": progress.reward,
                    "length": progress.length,
                    "timesteps": progress.timesteps,
                },
            )
        )

    def evaluation(self, job: TrainingJob, result: EvaluationFinished) -> None:
        with transaction(self._sessions) as session:
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

    def succeeded(self, job: TrainingJob) -> None:
        with transaction(self._sessions) as session:
            run = runs.finish_run(session, job.run_id, RunStatus.SUCCEEDED)
            data = {**run_event_data(run), "summary": runs.evaluation_summary(session, job.run_id)}
        TRAINING_RUNS.labels(job.agent_id, RunStatus.SUCCEEDED.value, VERSION).inc()
        self._bus.publish(Event(EventType.RUN_SUCCEEDED, data))

    def failed(self, job: TrainingJob, error: str) -> None:
        with transaction(self._sessions) as session:
            run = runs.finish_run(session, job.run_id, RunStatus.FAILED, error)
            data = run_event_data(run)
        TRAINING_RUNS.labels(job.agent_id, RunStatus.FAILED.value, VERSION).inc()
        self._bus.publish(Event(EventType.RUN_FAILED, data))

    def requeued(self, job: TrainingJob) -> None:
        with transaction(self._sessions) as session:
            run = runs.get_run(session, job.run_id)
            run.status = RunStatus.QUEUED.value
            data = run_event_data(run)
        self._bus.publish(Event(EventType.RUN_QUEUED, data))
