"""Stores what a training attempt reports and tells watchers about it.

Every write is fenced by the attempt number: once another worker has taken a run over, the
earlier attempt's writes raise ``StaleAttempt`` and change nothing. A worker beside the API
services records through ``RunRecorder``; a separate worker reaches the same ``AttemptService``
through the orchestration service's attempts API, which names a run and an attempt number only:
what a report's rows need of the run is read by the fence that guards them, not loaded apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from sqlalchemy.orm import Session

from tars.bus.base import EventBus
from tars.domain.errors import InvalidField, NotFound
from tars.domain.evaluations import NewEvaluation
from tars.domain.events import Event, EventType
from tars.domain.progress import EpisodeFinished, Report
from tars.domain.runs import Attempt, RunStatus, StaleAttempt, TrainingJob
from tars.metrics.catalogue import TRAINING_RUNS
from tars.metrics.counting import count_evaluations, count_training
from tars.services.evaluations import evaluations_event_data
from tars.storage import evaluations, runs
from tars.storage import idempotency as idempotency_keys
from tars.storage.database import SessionFactory, transaction
from tars.storage.runs import ReportTarget, run_record
from tars.version import VERSION

_REPORT_SCOPE = "run-report"

_FINISHED_EVENTS = {
    RunStatus.SUCCEEDED: EventType.RUN_SUCCEEDED,
    RunStatus.FAILED: EventType.RUN_FAILED,
    RunStatus.CANCELLED: EventType.RUN_CANCELLED,
}


class AttemptService:
    """Attempts at runs, named by run id and attempt number.

    ``artifacts``: where the checkpoints a report names must lie (a separate worker's reports come
    over the network); None for a worker beside the APIs, whose paths are its own.
    """

    def __init__(self, sessions: SessionFactory, bus: EventBus, region: str, artifacts: Path | None = None) -> None:
        self._sessions = sessions
        self._bus = bus
        self._region = region
        self._artifacts = artifacts

    def start(self, run_id: str, worker: str) -> int | None:
        """The number of a new attempt at the run, or None when it is already finished or cancelled."""
        with transaction(self._sessions) as session:
            row = runs.start_attempt(session, run_id, worker)
            if row is None:
                if not runs.run_exists(session, run_id):
                    raise NotFound("run", run_id)
                return None
            number, run = row.attempts, run_record(row)
        self._bus.publish(Event(EventType.RUN_STARTED, {**run.event_data(), "worker": worker}))
        return number

    def cancel_requested(self, run_id: str) -> bool:
        with self._sessions() as session:
            return runs.cancel_requested(session, run_id)

    def report(self, run_id: str, number: int, report: Report) -> None:
        """Store a report's episodes, evaluations and checkpoint together, once per ``report.seq``."""
        if report.model is not None and self._artifacts is not None:
            report = replace(report, model=replace(report.model, path=self._checkpoint_path(run_id, report.model.path)))
        with transaction(self._sessions) as session:
            try:
                target = runs.fence_for_report(session, run_id, number)
            except StaleAttempt:
                _raise_if_missing(session, run_id)
                raise
            key = f"{number}:{report.seq}"
            if idempotency_keys.claim(session, run_id, _REPORT_SCOPE, key, _report_hash(report)) is not None:
                return  # delivered before: its answer was lost, not its effects
            runs.record_steps(
                session,
                run_id,
                number,
                [
                    {
                        "episode": episode.episode,
                        "reward": episode.reward,
                        "length": episode.length,
                        "timesteps": episode.timesteps,
                        "metrics": episode.metrics or None,
                        "non_finite": list(episode.non_finite) or None,
                    }
                    for episode in report.episodes
                ],
            )
            stored = evaluations.insert_evaluations(
                session,
                [
                    NewEvaluation(
                        agent_id=target.agent_id,
                        run_id=run_id,
                        environment=target.environment,
                        region=self._region,
                        reward=result.reward,
                        episode_length=result.length,
                        duration_ms=result.duration_ms,
                    )
                    for result in report.evaluations
                ],
            )
            if report.model is not None:
                runs.fence(session, run_id, number, model_path=report.model.path)
            evaluation_data = evaluations_event_data(stored)
        count_training(
            target.agent_id,
            [episode.reward for episode in report.episodes],
            sum(episode.length for episode in report.episodes),
            report.episodes[-1].metrics if report.episodes else None,
        )
        count_evaluations(stored)
        events = [Event(EventType.RUN_PROGRESS, _progress_data(run_id, target, episode)) for episode in report.episodes]
        events += [Event(EventType.EVALUATION_CREATED, data) for data in evaluation_data]
        if events:
            self._bus.publish_many(events)

    def finish(self, run_id: str, number: int, status: RunStatus, error: str | None = None) -> None:
        with transaction(self._sessions) as session:
            try:
                row = runs.finish_run(session, run_id, number, status, error)
            except StaleAttempt:
                if runs.left_by(session, run_id, number, status):
                    return  # said before; its answer was lost
                _raise_if_missing(session, run_id)
                raise
            # A finished run takes no more reports: what guarded them against repeats can go.
            idempotency_keys.forget(session, run_id, _REPORT_SCOPE)
            run = run_record(row)
            data = {**run.event_data(), "summary": runs.evaluation_summary(session, run_id)}
        TRAINING_RUNS.labels(run.agent_id, status.value, VERSION).inc()
        self._bus.publish(Event(_FINISHED_EVENTS[status], data))

    def requeue(self, run_id: str, number: int) -> None:
        with transaction(self._sessions) as session:
            try:
                row = runs.return_to_queue(session, run_id, number)
            except StaleAttempt:
                if runs.left_by(session, run_id, number, RunStatus.QUEUED):
                    return
                _raise_if_missing(session, run_id)
                raise
            data = run_record(row).event_data()
        self._bus.publish(Event(EventType.RUN_QUEUED, data))

    def _checkpoint_path(self, run_id: str, path: str) -> str:
        assert self._artifacts is not None
        runs_dir = (self._artifacts / "runs" / run_id).resolve()
        resolved = self._artifacts.joinpath(path).resolve()
        if not resolved.is_relative_to(runs_dir):
            raise InvalidField("model.path", f"must lie in the run's artifact directory {runs_dir}")
        return str(resolved)


class RunRecorder:
    """The worker's Recorder (tars.worker.loop) beside the API services: straight into the database."""

    def __init__(self, sessions: SessionFactory, bus: EventBus, region: str) -> None:
        self._attempts = AttemptService(sessions, bus, region)

    def started(self, job: TrainingJob, worker: str) -> Attempt | None:
        """A new attempt at ``job``, or None when its run is already finished, cancelled or gone."""
        try:
            number = self._attempts.start(job.run_id, worker)
        except NotFound:
            return None
        return None if number is None else Attempt(job, number)

    def cancel_requested(self, attempt: Attempt) -> bool:
        return self._attempts.cancel_requested(attempt.job.run_id)

    def report(self, attempt: Attempt, report: Report) -> None:
        self._attempts.report(attempt.job.run_id, attempt.number, report)

    def finished(self, attempt: Attempt, status: RunStatus, error: str | None = None) -> None:
        self._attempts.finish(attempt.job.run_id, attempt.number, status, error)

    def requeued(self, attempt: Attempt) -> None:
        self._attempts.requeue(attempt.job.run_id, attempt.number)


def _progress_data(run_id: str, target: ReportTarget, episode: EpisodeFinished) -> dict[str, object]:
    data: dict[str, object] = {
        "run_id": run_id,
        "agent_id": target.agent_id,
        "status": RunStatus.RUNNING.value,
        "episodes": target.episodes,
        "episodes_done": episode.episode,
        "timesteps": target.timesteps,
        "timesteps_done": episode.timesteps,
        "reward": episode.reward,
        "length": episode.length,
        "metrics": episode.metrics,
    }
    if episode.non_finite:  # named apart: JSON has no NaN (the insight engine reads them)
        data["non_finite"] = list(episode.non_finite)
    return data


def _raise_if_missing(session: Session, run_id: str) -> None:
    # Only on the way out of a refused write: a run that is gone is a 404, not another owner.
    if not runs.run_exists(session, run_id):
        raise NotFound("run", run_id)


def _report_hash(report: Report) -> str:
    return hashlib.sha256(repr(report).encode()).hexdigest()
