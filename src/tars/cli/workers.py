"""Workers as the CLI runs them: wired to their queue and recorder, heartbeat exported as metrics.

Kept apart from the API servers so that ``tars worker`` never imports the web stack, nor (see
``make_separate_worker``) the database layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tars.bus.base import JobQueue, WorkerRegistry, WorkerStatus
from tars.bus.redis_streams import RedisJobQueue, RedisWorkerRegistry
from tars.metrics.catalogue import WORKER_BUSY, WORKER_HEARTBEAT, WORKER_JOBS, WORKER_RSS
from tars.settings import Settings
from tars.worker.executor import start_in_subprocess, start_in_thread
from tars.worker.loop import Recorder, Worker
from tars.worker.remote import OrchestrationClient, RemoteRecorder

if TYPE_CHECKING:
    from tars.services.runtime import Runtime


def make_worker(runtime: Runtime, *, beside_apis: bool) -> Worker:
    """A worker recording straight into this runtime's database.

    Beside the APIs (``tars up``) each job trains in a child process of its own, so the APIs
    never hold torch or a model; otherwise training runs in the worker's own process.
    """
    # Here, not at the top: a separate worker (make_separate_worker) never loads the database layer.
    from tars.services.recording import RunRecorder

    recorder = RunRecorder(runtime.sessions, runtime.bus, runtime.settings.region)
    return _worker(runtime.settings, runtime.queue, runtime.registry, recorder, beside_apis=beside_apis)


@dataclass
class SeparateWorker:
    worker: Worker
    queue: RedisJobQueue
    registry: RedisWorkerRegistry
    recorder: RemoteRecorder

    def close(self) -> None:
        self.queue.close()
        self.registry.close()


def make_separate_worker(settings: Settings) -> SeparateWorker:
    """``tars worker``: jobs from Redis Streams, attempts recorded through the orchestration service."""
    assert settings.redis_url is not None and settings.worker_api_key is not None  # checked by the command
    client = OrchestrationClient(
        settings.orchestration_base_url,
        settings.worker_api_key.get_secret_value(),
        retry_seconds=settings.worker_report_retry_seconds,
    )
    recorder = RemoteRecorder(client)
    queue = RedisJobQueue(
        settings.redis_url, claim_idle_seconds=settings.job_claim_idle_seconds, algorithms=settings.served_algorithms
    )
    queue.on_groups_created = recorder.recover
    registry = RedisWorkerRegistry(settings.redis_url)
    worker = _worker(settings, queue, registry, recorder, beside_apis=False)
    return SeparateWorker(worker, queue, registry, recorder)


def _worker(
    settings: Settings, queue: JobQueue, registry: WorkerRegistry, recorder: Recorder, *, beside_apis: bool
) -> Worker:
    return Worker(
        settings.worker_name,
        queue,
        recorder,
        artifact_dir=settings.artifacts,
        keep_alive_every=min(settings.worker_heartbeat_seconds, settings.job_claim_idle_seconds / 3),
        shutdown_grace=settings.worker_shutdown_grace_seconds,
        concurrency=settings.worker_concurrency,
        registry=registry,
        heartbeat_every=settings.worker_heartbeat_seconds,
        max_jobs=settings.worker_max_jobs,
        algorithms=settings.served_algorithms,
        on_heartbeat=export_worker_metrics,
        start_training=start_in_subprocess if beside_apis else start_in_thread,
    )


def export_worker_metrics(status: WorkerStatus) -> None:
    # Which families it trains: the memory alert picks out the workers that train PPO.
    labels = (status.name, ",".join(sorted(status.algorithms)))
    WORKER_RSS.labels(*labels).set(status.rss_bytes)
    WORKER_HEARTBEAT.labels(*labels).set(status.last_seen)
    WORKER_BUSY.labels(*labels).set(status.busy)
    WORKER_JOBS.labels(*labels).set(status.jobs_done)
