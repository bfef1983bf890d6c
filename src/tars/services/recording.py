"""Stores what a training attempt reports and tells watchers about it.

Every write is fenced by the attempt number: once another worker has taken a run over, the
earlier attempt's writes raise ``StaleAttempt`` and change nothing. A worker beside the API
services calls this directly; a separate worker reaches it through the orchestration service.
"""

from __future__ import annotations

import hashlib

from tars.bus.base import EventBus
from tars.domain.evaluations import NewEvaluation
from tars.domain.events import Event, EventType
from tars.domain.runs import Attempt, RunStatus, StaleAttempt, TrainingJob
from tars.metrics.catalogue import TRAINING_RUNS
from tars.metrics.counting import count_evaluations, count_training
from tars.services.evaluations import evaluations_event_data
from tars.services.training import run_event_data
from tars.storage import evaluations, runs
from tars.storage import idempotency as idempotency_keys
from tars.storage.database import SessionFactory, transaction
from tars.training.progress import EpisodeFinished, Report
from tars.version import VERSION

_REPORT_SCOPE = "run-report"

_FINISHED_EVENTS = {
    RunStatus.SUCCEEDED: EventType.RUN_SUCCEEDED,
    RunStatus.FAILED: EventType.RUN_FAILED,
    RunStatus.CANCELLED: EventType.RUN_CANCELLED,
}


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

    def report(self, attempt: Attempt, report: Report) -> None:
        """Store a report's episodes, evaluations and checkpoint together, once per ``report.seq``."""
        job = attempt.job
        with transaction(self._sessions) as session:
            runs.fence(session, job.run_id, attempt.number)
            key = f"{attempt.number}:{report.seq}"
            if idempotency_keys.claim(session, job.run_id, _REPORT_SCOPE, key, _report_hash(report)) is not None:
                return  # delivered before: its answer was lost, not its effects
            runs.record_steps(
                session,
                job.run_id,
                attempt.number,
                [
                    {
                        "episode": episode.episode,
                        "reward": episode.reward,
                        "length": episode.length,
                        "timesteps": episode.timesteps,
                        "metrics": episode.metrics or None,
                    }
                    for episode in report.episodes
                ],
            )
            stored = evaluations.insert_evaluations(
                session,
                [
                    NewEvaluation(
                        agent_id=job.agent_id,
                        run_id=job.run_id,
                        environment=job.environment,
                        region=self._region,
                        reward=result.reward,
                        episode_length=result.length,
                        duration_ms=result.duration_ms,
                    )
                    for result in report.evaluations
                ],
            )
            if report.model is not None:
                runs.fence(session, job.run_id, attempt.number, model_path=report.model.path)
            evaluation_data = evaluations_event_data(stored)
        count_training(
            job.agent_id,
            [episode.reward for episode in report.episodes],
            sum(episode.length for episode in report.episodes),
            report.episodes[-1].metrics if report.episodes else None,
        )
        count_evaluations(stored)
        events = [Event(EventType.RUN_PROGRESS, _progress_data(job, episode)) for episode in report.episodes]
        events += [Event(EventType.EVALUATION_CREATED, data) for data in evaluation_data]
        if events:
            self._bus.publish_many(events)

    def finished(self, attempt: Attempt, status: RunStatus, error: str | None = None) -> None:
        job = attempt.job
        with transaction(self._sessions) as session:
            try:
                run = runs.finish_run(session, job.run_id, attempt.number, status, error)
            except StaleAttempt:
                if runs.left_by(session, job.run_id, attempt.number, status):
                    return  # said before; its answer was lost
                raise
            # A finished run takes no more reports: what guarded them against repeats can go.
            idempotency_keys.forget(session, job.run_id, _REPORT_SCOPE)
            data = {**run_event_data(run), "summary": runs.evaluation_summary(session, job.run_id)}
        TRAINING_RUNS.labels(job.agent_id, status.value, VERSION).inc()
        self._bus.publish(Event(_FINISHED_EVENTS[status], data))

    def requeued(self, attempt: Attempt) -> None:
        with transaction(self._sessions) as session:
            try:
                run = runs.return_to_queue(session, attempt.job.run_id, attempt.number)
            except StaleAttempt:
                if runs.left_by(session, attempt.job.run_id, attempt.number, RunStatus.QUEUED):
                    return
                raise
            data = run_event_data(run)
        self._bus.publish(Event(EventType.RUN_QUEUED, data))


def _progress_data(job: TrainingJob, episode: EpisodeFinished) -> dict[str, object]:
    return {
        "run_id": job.run_id,
        "agent_id": job.agent_id,
        "status": RunStatus.RUNNING.value,
        "episodes": job.episodes,
        "episodes_done": episode.episode,
        "timesteps": job.timesteps,
        "timesteps_done": episode.timesteps,
        "reward": episode.reward,
        "length": episode.length,
        "metrics": episode.metrics,
    }


def _report_hash(report: Report) -> str:
    return hashlib.sha256(repr(report).encode()).hexdigest()
