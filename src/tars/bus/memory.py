"""In-process bus: the embedded mode's real implementation, not a test fake."""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tars.bus.base import Delivery, WorkerStatus
from tars.domain.events import Event
from tars.domain.runs import TrainingJob

log = logging.getLogger(__name__)

# Events a slow watcher may fall behind by before it misses some.
SUBSCRIBER_BACKLOG = 10_000


class InProcessJobQueue:
    def __init__(self) -> None:
        self._jobs: queue.Queue[Delivery] = queue.Queue()
        self._ids = itertools.count(1)

    def enqueue(self, job: TrainingJob) -> None:
        self._jobs.put(Delivery(job=job, message_id=str(next(self._ids))))

    def receive(self, consumer: str, timeout: float) -> Delivery | None:
        try:
            return self._jobs.get(timeout=timeout)
        except queue.Empty:
            return None

    def ack(self, delivery: Delivery) -> None:
        return None

    def keep_alive(self, delivery: Delivery, consumer: str) -> None:
        return None

    def release(self, delivery: Delivery) -> None:
        self._jobs.put(Delivery(job=delivery.job, message_id=delivery.message_id, redelivered=True))

    def close(self) -> None:
        return None


class InProcessWorkerRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._workers: dict[str, tuple[WorkerStatus, float]] = {}

    def beat(self, status: WorkerStatus, ttl: float) -> None:
        with self._lock:
            self._workers[status.name] = (status, time.monotonic() + ttl)

    def workers(self) -> list[WorkerStatus]:
        now = time.monotonic()
        with self._lock:
            self._workers = {name: entry for name, entry in self._workers.items() if entry[1] > now}
            return sorted((status for status, _ in self._workers.values()), key=lambda s: s.name)

    def remove(self, name: str) -> None:
        with self._lock:
            self._workers.pop(name, None)


class InProcessEventBus:
    def __init__(self, backlog: int = SUBSCRIBER_BACKLOG) -> None:
        self._backlog = backlog
        self._lock = threading.Lock()
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event]]] = set()

    def publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for loop, inbox in subscribers:
            try:
                loop.call_soon_threadsafe(_offer, inbox, event)
            except RuntimeError:
                # The subscriber's loop has closed; it unsubscribes on its way out.
                continue

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[Event]]:
        inbox: asyncio.Queue[Event] = asyncio.Queue(maxsize=self._backlog)
        entry = (asyncio.get_running_loop(), inbox)
        with self._lock:
            self._subscribers.add(entry)
        try:
            yield _drain(inbox)
        finally:
            with self._lock:
                self._subscribers.discard(entry)

    def close(self) -> None:
        with self._lock:
            self._subscribers.clear()


def _offer(inbox: asyncio.Queue[Event], event: Event) -> None:
    try:
        inbox.put_nowait(event)
    except asyncio.QueueFull:
        log.warning("event subscriber is %d events behind; dropping %s", inbox.qsize(), event.type)


async def _drain(inbox: asyncio.Queue[Event]) -> AsyncIterator[Event]:
    while True:
        yield await inbox.get()
