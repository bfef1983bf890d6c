"""A worker taking real jobs from the real queue, on both backends."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import psutil
import pytest
import redis

from tars.cli.workers import make_worker
from tars.domain.events import Event
from tars.domain.runs import RunStatus
from tars.services.runtime import Runtime
from tars.services.training import TrainingRequest, cancel_run, submit_training
from tars.settings import Settings
from tars.storage import runs
from tars.storage.evaluations import EvaluationFilter, list_evaluations
from tars.worker.loop import Worker
from tests.waiting import eventually


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"worker_name": "test-worker", "worker_heartbeat_seconds": 0.2})


def submit(runtime: Runtime, **fields: object) -> str:
    request = TrainingRequest(**{"agent_id": "dqn", "episodes": 3, "seed": 5, **fields})  # type: ignore[arg-type]
    run = submit_training(
        runtime.sessions,
        runtime.queue,
        runtime.bus,
        request,
        evaluation_episodes=2,
        limits=runtime.settings.memory_limits,
        by=None,
    )
    return run.run_id


def wait_for(runtime: Runtime, run_id: str, statuses: set[RunStatus], timeout: float = 60) -> RunStatus:
    def status() -> RunStatus | None:
        with runtime.sessions() as session:
            current = RunStatus(runs.get_run(session, run_id).status)
        return current if current in statuses else None

    return eventually(status, timeout, interval=0.05, message=f"run {run_id} in {sorted(statuses)}")


def wait_running(runtime: Runtime, run_id: str, episodes: int = 1, timeout: float = 60) -> None:
    def training() -> bool:
        with runtime.sessions() as session:
            run = runs.get_run(session, run_id)
            return run.status == RunStatus.RUNNING and run.episodes_done >= episodes

    eventually(training, timeout, message=f"run {run_id} to train {episodes} episode(s)")


FINISHED = {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}


def training_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]


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
    assert wait_for(runtime, run_id, FINISHED) is RunStatus.SUCCEEDED
    with runtime.sessions() as session:
        run = runs.get_run(session, run_id)
        assert (run.episodes_done, run.attempts, run.worker) == (3, 1, "test-worker")
        assert run.model_path is not None and Path(run.model_path).is_file()
        assert Path(run.model_path).is_relative_to(runtime.settings.artifacts)
        assert len(runs.step_rewards(session, run_id)) == 3
        assert runs.latest_metrics(session, run_id) is not None
        page = list_evaluations(session, EvaluationFilter(run_id=run_id), limit=10)
        assert len(page.items) == 2
        assert {(e.agent_id, e.environment, e.region) for e in page.items} == {("dqn", "CartPole-v1", "us-west-2")}
    eventually(lambda: any(e.type == "run.succeeded" for e in watcher.events), 5, message="run.succeeded on the bus")
    watcher.close()
    types = [e.type for e in watcher.events if e.data.get("run_id") == run_id]
    assert types == ["run.queued", "run.started", *["run.progress"] * 3, *["evaluation.created"] * 2, "run.succeeded"]


def test_a_job_that_cannot_train_fails_with_its_reason(runtime: Runtime, worker: Worker) -> None:
    source = submit(runtime, agent_id="ppo", episodes=1)
    assert wait_for(runtime, source, FINISHED) is RunStatus.SUCCEEDED
    with runtime.sessions() as session:
        checkpoint = Path(str(runs.get_run(session, source).model_path))
    run_id = submit(runtime, agent_id="ppo", episodes=1, from_run=source)
    checkpoint.unlink()  # the artifact store lost it before the worker got there
    assert wait_for(runtime, run_id, FINISHED) is RunStatus.FAILED
    with runtime.sessions() as session:
        run = runs.get_run(session, run_id)
        assert run.error and "model.zip" in run.error
        assert run.finished_at is not None


def training_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("tars-train-")]


@pytest.mark.parametrize("beside_apis", [False, True], ids=["in-worker", "in-subprocess"])
def test_a_running_run_is_cancelled_and_its_training_stopped(runtime: Runtime, beside_apis: bool) -> None:
    worker = make_worker(runtime, beside_apis=beside_apis)
    worker.start()
    try:
        run_id = submit(runtime, episodes=100_000)
        wait_running(runtime, run_id)
        children, threads = training_processes(), training_threads()
        assert (bool(children), bool(threads)) == (beside_apis, not beside_apis)
        cancel_run(runtime.sessions, runtime.bus, run_id, by=None)
        assert wait_for(runtime, run_id, FINISHED, timeout=15) is RunStatus.CANCELLED
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive
        for thread in threads:
            thread.join(10)
            assert not thread.is_alive()
        with runtime.sessions() as session:
            # Stopped mid-training: no checkpoint, no evaluations of a model it never finished.
            assert runs.get_run(session, run_id).model_path is None
            assert list_evaluations(session, EvaluationFilter(run_id=run_id), limit=1).items == []
    finally:
        worker.stop()
        worker.join(30)


def test_a_queued_run_cancelled_before_a_worker_takes_it_is_never_trained(runtime: Runtime) -> None:
    run_id = submit(runtime)
    cancel_run(runtime.sessions, runtime.bus, run_id, by=None)
    late = make_worker(runtime, beside_apis=False)
    late.start()
    try:
        # The worker takes the job, sees the run is cancelled, and drops it.
        eventually(lambda: late.status().jobs_done >= 1, 10, message="the worker to drop the job")
    finally:
        late.stop()
        late.join(10)
    with runtime.sessions() as session:
        run = runs.get_run(session, run_id)
        assert (run.status, run.attempts) == ("cancelled", 0)


def test_shutdown_past_the_grace_period_hands_the_job_back(runtime: Runtime) -> None:
    runtime.settings.worker_shutdown_grace_seconds = 0.0
    impatient = make_worker(runtime, beside_apis=False)
    impatient.start()
    run_id = submit(runtime, episodes=100_000)
    wait_running(runtime, run_id)
    impatient.stop()
    impatient.join(30)
    with runtime.sessions() as session:
        assert runs.get_run(session, run_id).status == RunStatus.QUEUED
    delivery = runtime.queue.receive("next-worker", timeout=5)
    assert delivery is not None and delivery.job.run_id == run_id
    runtime.queue.ack(delivery)


def test_shutdown_within_the_grace_period_finishes_the_job(runtime: Runtime) -> None:
    patient = make_worker(runtime, beside_apis=False)
    patient.start()
    run_id = submit(runtime, episodes=5)
    wait_running(runtime, run_id)
    patient.stop()
    patient.join(60)
    with runtime.sessions() as session:
        assert runs.get_run(session, run_id).status == RunStatus.SUCCEEDED


def test_heartbeats_show_the_worker_and_what_it_runs(runtime: Runtime, worker: Worker) -> None:
    run_id = submit(runtime, episodes=100_000)
    wait_running(runtime, run_id)
    eventually(
        lambda: any(status.runs == [run_id] for status in runtime.registry.workers()),
        message="a heartbeat with the run",
    )
    [status] = runtime.registry.workers()
    assert (status.name, status.busy, status.runs, status.state) == ("test-worker", 1, [run_id], "running")
    assert status.rss_bytes > 50 * 2**20  # the worker and its training child
    cancel_run(runtime.sessions, runtime.bus, run_id, by=None)
    wait_for(runtime, run_id, FINISHED)


def test_the_recycle_limit_stops_a_worker_after_its_jobs(runtime: Runtime) -> None:
    runtime.settings.worker_max_jobs = 1
    recycled = make_worker(runtime, beside_apis=False)
    recycled.start()
    run_id = submit(runtime, episodes=1)
    assert wait_for(runtime, run_id, FINISHED) is RunStatus.SUCCEEDED
    recycled.join(10)
    assert recycled.stopping


@pytest.mark.parametrize("backend", ["distributed"], indirect=True)
def test_queued_runs_redis_forgot_are_queued_again_and_trained_once(runtime: Runtime, redis_url: str) -> None:
    lost = submit(runtime, episodes=1)
    redis.Redis.from_url(redis_url).flushdb()  # Redis restarted without its data
    kept = submit(runtime, episodes=1)
    worker = make_worker(runtime, beside_apis=False)
    worker.start()
    try:
        for run_id in (lost, kept):
            assert wait_for(runtime, run_id, FINISHED) is RunStatus.SUCCEEDED
    finally:
        worker.stop()
        worker.join(30)
    with runtime.sessions() as session:
        # The job still on its stream was not queued a second time.
        assert [runs.get_run(session, run_id).attempts for run_id in (lost, kept)] == [1, 1]
    assert redis.Redis.from_url(redis_url).xlen("tars:jobs:dqn") == 0
