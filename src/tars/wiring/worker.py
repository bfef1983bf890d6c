"""Builds workers: one beside the APIs recording into the runtime's database, or a separate one
taking jobs from Redis and recording through the orchestration service.

Imports nothing of the database layer at the top: a separate worker (``build_separate_worker``)
never loads SQLAlchemy, the web stack or the auth stack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tars.bus.redis_streams import RedisJobQueue, RedisWorkerRegistry
from tars.domain.workers import WorkerStatus
from tars.settings import Settings
from tars.worker.executor import start_in_subprocess, start_in_thread
from tars.worker.loop import Recorder, Worker
from tars.worker.ports import Heartbeats, JobSource
from tars.worker.remote import OrchestrationClient, OrchestrationRefused, RemoteRecorder

if TYPE_CHECKING:
    from tars.services.runtime import Runtime

__all__ = ["OrchestrationRefused", "SeparateWorker", "build_separate_worker", "build_worker"]

HeartbeatHook = Callable[[WorkerStatus], None]


def build_worker(runtime: Runtime, *, beside_apis: bool, on_heartbeat: HeartbeatHook | None = None) -> Worker:
    """A worker recording straight into this runtime's database.

    Beside the APIs (``tars up``) each job trains in a child process of its own, so the APIs
    never hold torch or a model; otherwise training runs in the worker's own process.
    """
    # Here, not at the top: a separate worker never loads the database layer.
    from tars.services.recording import RunRecorder

    recorder = RunRecorder(runtime.sessions, runtime.bus, runtime.settings.region)
    return _worker(
        runtime.settings, runtime.queue, runtime.registry, recorder, beside_apis=beside_apis, on_heartbeat=on_heartbeat
    )


@dataclass
class SeparateWorker:
    worker: Worker
    queue: RedisJobQueue
    registry: RedisWorkerRegistry
    recorder: RemoteRecorder

    def close(self) -> None:
        self.queue.close()
        self.registry.close()
        self.recorder.close()


def build_separate_worker(settings: Settings, *, on_heartbeat: HeartbeatHook | None = None) -> SeparateWorker:
    """``tars worker``: jobs from Redis Streams, attempts recorded through the orchestration service."""
    if settings.redis_url is None or settings.worker_api_key is None:
        raise ValueError("a separate worker needs TARS_REDIS_URL and TARS_WORKER_API_KEY")
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
    worker = _worker(settings, queue, registry, recorder, beside_apis=False, on_heartbeat=on_heartbeat)
    return SeparateWorker(worker, queue, registry, recorder)


def _worker(
    settings: Settings,
    queue: JobSource,
    registry: Heartbeats,
    recorder: Recorder,
    *,
    beside_apis: bool,
    on_heartbeat: HeartbeatHook | None,
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
        on_heartbeat=on_heartbeat,
        start_training=start_in_subprocess if beside_apis else start_in_thread,
    )
