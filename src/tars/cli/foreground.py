"""Runs services and workers in the foreground until SIGINT or SIGTERM, then stops them cleanly."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from tars.tracing.setup import shutdown_tracing
from tars.worker.loop import Worker

if TYPE_CHECKING:
    # Only for types: a worker-only process (`tars worker`) runs without the web stack.
    import uvicorn

log = logging.getLogger(__name__)


async def _run(servers: list[uvicorn.Server], worker: Worker | None, on_started: Callable[[], None] | None) -> None:
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
    freezing = asyncio.create_task(_once_started(servers, on_started))
    try:
        if servers:
            await asyncio.gather(*(server.serve() for server in servers))
        else:
            await stopped.wait()
    finally:
        freezing.cancel()
        request_stop()
        if worker is not None:
            await asyncio.to_thread(worker.join)
        await asyncio.to_thread(shutdown_tracing)  # the last spans, exported before the process goes
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _once_started(servers: list[uvicorn.Server], on_started: Callable[[], None] | None) -> None:
    """What startup built lives as long as the process: frozen, the collector stops walking it.
    Every full collection walked those ~150,000 objects again; with the garbage of 1,000-item
    batches that cost a fifth of ingest throughput. Then ``on_started``: the servers' real
    addresses are known (a server asked for port 0 has its port)."""
    while not all(server.started for server in servers):
        await asyncio.sleep(0.05)
    gc.freeze()
    # Requests make many short-lived containers; with the default 700, a young collection came
    # every request or two and promoted whatever requests were still in flight, for fuller
    # collections to walk again. Ten times that lets most of it die young.
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 7_000), gen1, gen2)
    if on_started is not None:
        on_started()


def run_foreground(
    servers: list[uvicorn.Server], worker: Worker | None, on_started: Callable[[], None] | None = None
) -> None:
    with asyncio.Runner(loop_factory=_loop_factory() if servers else None) as runner:
        runner.run(_run(servers, worker, on_started))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop for servers where it is installed (it comes with uvicorn[standard]), as uvicorn itself
    would pick: its sockets and callbacks cost a fraction of the standard loop's. A worker alone
    serves nothing on its loop and does without it (a megabyte it would keep for nothing)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
