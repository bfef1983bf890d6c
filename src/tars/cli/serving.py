"""Runs services and workers in the foreground until SIGINT or SIGTERM, then stops them cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from tars.bus.base import WorkerStatus
from tars.metrics import WORKER_BUSY, WORKER_HEARTBEAT, WORKER_JOBS, WORKER_RSS
from tars.runtime import Runtime
from tars.services.recording import RunRecorder
from tars.worker.loop import Worker

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us, so several can share one process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_server(app: FastAPI, host: str, port: int, log_level: str) -> uvicorn.Server:
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level.lower(), lifespan="on", ws_ping_interval=None
    )
    return _Server(config)


def make_worker(runtime: Runtime) -> Worker:
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
    )


def export_worker_metrics(status: WorkerStatus) -> None:
    WORKER_RSS.labels(status.name).set(status.rss_bytes)
    WORKER_HEARTBEAT.labels(status.name).set(status.last_seen)
    WORKER_BUSY.labels(status.name).set(status.busy)
    WORKER_JOBS.labels(status.name).set(status.jobs_done)


async def _run(servers: list[uvicorn.Server], worker: Worker | None) -> None:
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()

    def request_stop() -> None:
        if not stopped.is_set():
            log.info("stopping")
        stopped.set()
        for server in servers:
            server.should_exit = True
        if worker is not None:
            worker.stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)
    if worker is not None:
        worker.start()
    try:
        if servers:
            await asyncio.gather(*(server.serve() for server in servers))
        else:
            await stopped.wait()
    finally:
        request_stop()
        if worker is not None:
            await asyncio.to_thread(worker.join)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_foreground(servers: list[uvicorn.Server], worker: Worker | None) -> None:
    asyncio.run(_run(servers, worker))
