"""In-process bus: the embedded mode's real implementation, not a test fake."""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from tars.bus.base import History
from tars.domain.agents import ALGORITHMS
from tars.domain.events import Event
from tars.domain.jobs import Delivery, QueueStats
from tars.domain.runs import TrainingJob
from tars.domain.workers import WorkerStatus
from tars.tracing.propagation import message_carrier

log = logging.getLogger(__name__)

# Events a slow watcher may fall behind by before it misses some.
SUBSCRIBER_BACKLOG = 10_000


class InProcessJobQueue:
    transport = "in_process"
    holds_jobs_apart = False

    def __init__(self) -> None:
        self._jobs: queue.Queue[Delivery] = queue.Queue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        # For stats: when each waiting job was put in, and the jobs handed out and not yet done.
        self._waiting: dict[str, tuple[str, float]] = {}
        self._pending: dict[str, Delivery] = {}

    def enqueue(self, job: TrainingJob, trace: dict[str, str] | None = None) -> None:
        self._put(Delivery(job=job, message_id=str(next(self._ids)), trace=dict(trace or {})))

    def _put(self, delivery: Delivery) -> None:
        with self._lock:
            self._waiting[delivery.message_id] = (delivery.job.algorithm, time.monotonic())
        self._jobs.put(delivery)

    def receive(self, consumer: str, timeout: float) -> Delivery | None:
        try:
            delivery = self._jobs.get(timeout=timeout)
        except queue.Empty:
            return None
        with self._lock:
            self._waiting.pop(delivery.message_id, None)
            self._pending[delivery.message_id] = delivery
        return delivery

    def ack(self, delivery: Delivery) -> None:
        with self._lock:
            self._pending.pop(delivery.message_id, None)

    def keep_alive(self, delivery: Delivery, consumer: str) -> None:
        return None

    def release(self, delivery: Delivery) -> None:
        with self._lock:
            self._pending.pop(delivery.message_id, None)
        self._put(replace(delivery, redelivered=True))

    def waiting_run_ids(self, algorithm: str) -> set[str]:
        with self._lock:
            pending = [delivery.job for delivery in self._pending.values()]
        with self._jobs.mutex:
            waiting = [delivery.job for delivery in self._jobs.queue]
        return {job.run_id for job in pending + waiting if job.algorithm == algorithm}

    def stats(self) -> list[QueueStats]:
        waiting = dict.fromkeys(ALGORITHMS, 0)
        with self._lock:
            now = time.monotonic()
            oldest = dict.fromkeys(ALGORITHMS, now)
            for algorithm, since in self._waiting.values():
                waiting[algorithm] += 1
                oldest[algorithm] = min(oldest[algorithm], since)
            pending = [delivery.job.algorithm for delivery in self._pending.values()]
        return [
            QueueStats(algorithm, waiting[algorithm], pending.count(algorithm), now - oldest[algorithm])
            for algorithm in ALGORITHMS
        ]

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


def first_event_id() -> int:
    """Where a channel's ids start: the time in milliseconds, so ids after a restart that lost the
    replay window are above every id handed out before it, and an old id is never mistaken for a
    new event."""
    return int(time.time() * 1000)


class _ChannelLog:
    def __init__(self, window: int) -> None:
        self.last_id = first_event_id()
        self.events: deque[Event] = deque(maxlen=window)


class InProcessEventBus:
    def __init__(self, window: int = 1_000, backlog: int = SUBSCRIBER_BACKLOG) -> None:
        self._window = window
        self._backlog = backlog
        self._lock = threading.Lock()
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event]]] = set()
        self._logs: dict[str, _ChannelLog] = {}

    def publish(self, event: Event) -> Event:
        event = event.traced(message_carrier("event.publish"))
        with self._lock:
            ids = {}
            logs = []
            for channel in event.channels:
                log_ = self._logs.get(channel)
                if log_ is None:
                    log_ = self._logs[channel] = _ChannelLog(self._window)
                log_.last_id += 1
                ids[channel] = log_.last_id
                logs.append(log_)
            numbered = event.numbered(ids)
            for log_ in logs:
                log_.events.append(numbered)
            # Still under the lock: subscribers see each channel's events in id order.
            for loop, inbox in self._subscribers:
                try:
                    loop.call_soon_threadsafe(_offer, inbox, numbered)
                except RuntimeError:
                    # The subscriber's loop has closed; it unsubscribes on its way out.
                    continue
        return numbered

    def publish_many(self, events: list[Event]) -> list[Event]:
        return [self.publish(event) for event in events]

    async def publish_many_on_loop(self, events: list[Event]) -> list[Event]:
        # In memory, publishing is a few appends under a lock: done right here.
        return self.publish_many(events)

    async def close_on_loop(self) -> None:
        pass

    async def history(self, channel: str, after: int | None) -> History:
        with self._lock:
            log_ = self._logs.get(channel)
            if log_ is None:
                # Opened now, so the channel's first event will follow its latest id directly.
                log_ = self._logs[channel] = _ChannelLog(self._window)
            if after is None:
                return History([], log_.last_id, True)
            events = [e for e in log_.events if e.ids[channel] > after]
            first = events[0].ids[channel] if events else log_.last_id + 1
            return History(events, log_.last_id, first == after + 1 and after <= log_.last_id)

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
        # The subscriber fills the gap from the channel's history when the next event shows it.
        log.warning("event subscriber is %d events behind; dropping %s", inbox.qsize(), event.type)


async def _drain(inbox: asyncio.Queue[Event]) -> AsyncIterator[Event]:
    while True:
        yield await inbox.get()
