"""Exactly-once effects: an attempt that lost its run to another worker changes nothing."""

from __future__ import annotations

import pytest

from tars.domain.jobs import Delivery
from tars.domain.progress import EpisodeFinished, EvaluationFinished, Report
from tars.domain.runs import Run, RunStatus, StaleAttempt
from tars.services.recording import RunRecorder
from tars.services.runtime import Runtime
from tars.services.training import TrainingRequest, submit_training
from tars.storage import runs
from tars.storage.evaluations import EvaluationFilter, list_evaluations


def _queued_run(runtime: Runtime) -> tuple[Run, Delivery, RunRecorder]:
    """A dqn run submitted and its job taken from the queue, ready to be recorded."""
    run = submit_training(
        runtime.sessions,
        runtime.queue,
        runtime.bus,
        TrainingRequest(agent_id="dqn", episodes=2),
        evaluation_episodes=1,
        limits=runtime.settings.memory_limits,
        by=None,
    )
    delivery = runtime.queue.receive("w", timeout=1)
    assert delivery is not None
    return run, delivery, RunRecorder(runtime.sessions, runtime.bus, "us-west-2")


def test_a_superseded_attempt_cannot_write(runtime: Runtime) -> None:
    run, delivery, recorder = _queued_run(runtime)
    slow = recorder.started(delivery.job, "slow-worker")
    assert slow is not None
    recorder.report(slow, Report(1, episodes=(EpisodeFinished(1, 10.0, 10, 10),)))
    # The slow worker looked dead; another one took the job over and starts again.
    fresh = recorder.started(delivery.job, "fresh-worker")
    assert fresh is not None and fresh.number == slow.number + 1

    with pytest.raises(StaleAttempt):
        recorder.report(slow, Report(2, episodes=(EpisodeFinished(2, 11.0, 11, 21),)))
    with pytest.raises(StaleAttempt):
        recorder.report(slow, Report(3, evaluations=(EvaluationFinished(1, 9.0, 9, 1.0),)))
    with pytest.raises(StaleAttempt):
        recorder.finished(slow, RunStatus.SUCCEEDED)

    recorder.report(fresh, Report(1, episodes=(EpisodeFinished(1, 20.0, 20, 20),)))
    recorder.report(fresh, Report(2, episodes=(EpisodeFinished(2, 20.0, 20, 40),)))
    recorder.report(fresh, Report(3, evaluations=(EvaluationFinished(1, 30.0, 30, 1.0),)))
    recorder.finished(fresh, RunStatus.SUCCEEDED)
    with runtime.sessions() as session:
        row = runs.get_run(session, run.run_id)
        assert (row.status, row.worker, row.attempts, row.episodes_done) == ("succeeded", "fresh-worker", 2, 2)
        assert runs.step_rewards(session, run.run_id) == [20.0, 20.0]
        stored = list_evaluations(session, EvaluationFilter(run_id=run.run_id), limit=10).items
        assert [e.reward for e in stored] == [30.0]
    # A late re-delivery of the finished run's job does nothing.
    assert recorder.started(delivery.job, "late-worker") is None
    runtime.queue.ack(delivery)


def test_a_job_that_keeps_losing_its_worker_is_failed_for_good(runtime: Runtime) -> None:
    run, delivery, recorder = _queued_run(runtime)
    attempts = [recorder.started(delivery.job, f"worker-{n}") for n in range(6)]
    assert all(a is not None for a in attempts[:5]) and attempts[5] is None
    with runtime.sessions() as session:
        row = runs.get_run(session, run.run_id)
        assert row.status == "failed" and row.error == "gave up after 5 attempts"


def test_a_report_delivered_twice_is_recorded_once_and_so_is_the_end(runtime: Runtime) -> None:
    run, delivery, recorder = _queued_run(runtime)
    attempt = recorder.started(delivery.job, "w")
    assert attempt is not None
    report = Report(
        1,
        episodes=(EpisodeFinished(1, 10.0, 10, 10), EpisodeFinished(2, 12.0, 12, 22)),
        evaluations=(EvaluationFinished(1, 11.0, 11, 2.0),),
    )
    recorder.report(attempt, report)
    recorder.report(attempt, report)  # a retry whose first answer was lost
    recorder.finished(attempt, RunStatus.SUCCEEDED)
    recorder.finished(attempt, RunStatus.SUCCEEDED)  # likewise
    with pytest.raises(StaleAttempt):
        recorder.finished(attempt, RunStatus.FAILED)  # not what it said before
    with runtime.sessions() as session:
        row = runs.get_run(session, run.run_id)
        assert (row.status, row.episodes_done, row.timesteps_done) == ("succeeded", 2, 22)
        assert runs.step_rewards(session, run.run_id) == [10.0, 12.0]
        stored = list_evaluations(session, EvaluationFilter(run_id=run.run_id), limit=10).items
        assert [e.reward for e in stored] == [11.0]
    runtime.queue.ack(delivery)
