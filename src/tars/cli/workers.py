"""Workers as the CLI runs them: built by `tars.wiring.worker`, their heartbeat exported as metrics.

Kept apart from the API servers so that ``tars worker`` never imports the web stack, nor (see
``make_separate_worker``) the database layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tars.domain.workers import WorkerStatus
from tars.metrics.catalogue import WORKER_BUSY, WORKER_HEARTBEAT, WORKER_JOBS, WORKER_RSS
from tars.settings import Settings
from tars.wiring.worker import SeparateWorker, build_separate_worker, build_worker
from tars.worker.loop import Worker

if TYPE_CHECKING:
    from tars.services.runtime import Runtime

__all__ = ["SeparateWorker", "export_worker_metrics", "make_separate_worker", "make_worker"]


def make_worker(runtime: Runtime, *, beside_apis: bool) -> Worker:
    """A worker recording straight into this runtime's database (``tars up``, tests)."""
    return build_worker(runtime, beside_apis=beside_apis, on_heartbeat=export_worker_metrics)


def make_separate_worker(settings: Settings) -> SeparateWorker:
    """``tars worker``: jobs from Redis Streams, attempts recorded through the orchestration service."""
    return build_separate_worker(settings, on_heartbeat=export_worker_metrics)


def export_worker_metrics(status: WorkerStatus) -> None:
    # Which families it trains: the memory alert picks out the workers that train PPO.
    labels = (status.name, ",".join(sorted(status.algorithms)))
    WORKER_RSS.labels(*labels).set(status.rss_bytes)
    WORKER_HEARTBEAT.labels(*labels).set(status.last_seen)
    WORKER_BUSY.labels(*labels).set(status.busy)
    WORKER_JOBS.labels(*labels).set(status.jobs_done)
