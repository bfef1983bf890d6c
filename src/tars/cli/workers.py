"""The worker as the CLI runs it: wired to the runtime, its heartbeat exported as metrics.

Kept apart from the API servers so that ``tars worker`` never imports the web stack.
"""

from __future__ import annotations

from tars.bus.base import WorkerStatus
from tars.metrics import WORKER_BUSY, WORKER_HEARTBEAT, WORKER_JOBS, WORKER_RSS
from tars.runtime import Runtime
from tars.services.recording import RunRecorder
from tars.worker.executor import start_in_subprocess, start_in_thread
from tars.worker.loop import Worker


def make_worker(runtime: Runtime, *, beside_apis: bool) -> Worker:
    """A worker for this runtime; ``beside_apis`` when it shares its process with the API services.

    Beside the APIs (``tars up``) each job trains in a child process of its own, so the APIs
    never hold torch or a model; a dedicated worker (``tars worker``) trains in its own process.
    """
    settings = runtime.settings
    return Worker(
        settings.worker_name,
        runtime.queue,
        RunRecorder(runtime.sessions, runtime.bus, settings.region),
        artifact_dir=settings.artifacts,
        keep_alive_every=min(settings.worker_heartbeat_seconds, settings.job_claim_idle_seconds / 3),
        shutdown_grace=settings.worker_shutdown_grace_seconds,
        concurrency=settings.worker_concurrency,
        registry=runtime.registry,
        heartbeat_every=settings.worker_heartbeat_seconds,
        max_jobs=settings.worker_max_jobs,
        algorithms=settings.served_algorithms,
        on_heartbeat=export_worker_metrics,
        start_training=start_in_subprocess if beside_apis else start_in_thread,
    )


def export_worker_metrics(status: WorkerStatus) -> None:
    WORKER_RSS.labels(status.name).set(status.rss_bytes)
    WORKER_HEARTBEAT.labels(status.name).set(status.last_seen)
    WORKER_BUSY.labels(status.name).set(status.busy)
    WORKER_JOBS.labels(status.name).set(status.jobs_done)
