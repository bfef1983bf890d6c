"""A worker taking real jobs from the real queue, on both backends."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import pytest

from tars.domain.events import Event
from tars.domain.runs import RunStatus
from tars.runtime import Runtime
from tars.services.recording import RunRecorder
from tars.services.training import TrainingRequest, submit_training
from tars.storage import runs
from tars.storage.evaluations import EvaluationFilter, list_evaluations
from tars.worker.loop import Worker


def make_worker(runtime: Runtime, grace: float = 10.0) -> Worker:
    return Worker(
        "test-worker",
        runtime.queue,
        RunRecorder(runtime.sessions, runtime.bus, runtime.settings.region),
        keep_alive_every=0.5,
        shutdown_grace=grace,
    )


@pytest.fixture
def worker(runtime: Runtime) -> Iterator[Worker]:
    started = make_worker(runtime)
    started.start()
    yield started
    started.stop()
    started.join(30)


def submit(runtime: Runtime, **fields: object) -> str:
    request = TrainingRequest(**{"agent_id": "dqn", "episodes": 3, "seed": 5, **fields})  # type: ignore[arg-type]
    run = submit_training(runtime.sessions, runtime.queue, runtime.bus, request, evaluation_episodes=2, created_by=None)
    return run.id


def wait_for(runtime: Runtime, run_id: str, statuses: set[RunStatus], timeout: float = 60) -> RunStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with runtime.sessions() as session:
            status = RunStatus(runs.get_run(session, run_id).status)
        if status in statuses:
            return status
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} not in {statuses} after {timeout} s")


class EventRecorder:
    """Collects bus events on a background event loop, as the dashboard does."""

    def __init__(self, runtime: Runtime) -> None:
        self.events: list[Event] = []
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, args=(runtime,), daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def _run(self, runtime: Runtime) -> None:
        self._task = self._loop.create_task(self._collect(runtime))
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)
        self._loop.close()

    async def _collect(self, runtime: Runtime) -> None:
        async with runtime.bus.subscribe() as stream:
            self._ready.set()
            async for event in stream:
                self.events.append(event)

    def close(self) -> None:
        assert self._task is not None
        self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(5)


def test_a_job_is_trained_evaluated_stored_and_announced(runtime: Runtime, worker: Worker) -> None:
    watcher = EventRecorder(runtime)
    run_id = submit(runtime)
    assert wait_for(runtime, run_id, {RunStatus.SUCCEEDED, RunStatus.FAILED}) is RunStatus.SUCCEEDED
    with runtime.sessions() as session:
        run = runs.get_run(session, run_id)
        assert (run.episodes_done, run.attempts, run.worker) == (3, 1, "test-worker")
        assert len(runs.step_rewards(session, run_id)) == 3
        page = list_evaluations(session, EvaluationFilter(run_id=run_id), limit=10)
        assert len(page.items) == 2
        assert {(e.agent_id, e.environment, e.region) for e in page.items} == {("dqn", "CartPole-v1", "us-west-2")}
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(e.type == "run.succeeded" for e in watcher.events):
        time.sleep(0.05)
    watcher.close()
    types = [e.type for e in watcher.events if e.data.get("run_id") == run_id]
    assert types == ["run.queued", "run.started", *["run.progress"] * 3, *["evaluation.created"] * 2, "run.succeeded"]


def test_a_job_that_cannot_train_fails_with_its_reason(runtime: Runtime, worker: Worker) -> None:
    run_id = submit(runtime, hyperparameters={"learning_rate": "fast"})
    assert wait_for(runtime, run_id, {RunStatus.SUCCEEDED, RunStatus.FAILED}) is RunStatus.FAILED
    with runtime.sessions() as session:
        run = runs.get_run(session, run_id)
        assert run.error and "fast" in run.error
        assert run.finished_at is not None


def test_shutdown_past_the_grace_period_hands_the_job_back(runtime: Runtime) -> None:
    impatient = make_worker(runtime, grace=0.0)
    impatient.start()
    run_id = submit(runtime, episodes=100_000)
    wait_for(runtime, run_id, {RunStatus.RUNNING})
    impatient.stop()
    impatient.join(30)
    with runtime.sessions() as session:
        assert runs.get_run(session, run_id).status == RunStatus.QUEUED
    delivery = runtime.queue.receive("next-worker", timeout=5)
    assert delivery is not None and delivery.job.run_id == run_id
    runtime.queue.ack(delivery)
