"""The two small interfaces every bus implementation provides."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from tars.domain.events import Event
from tars.domain.jobs import Delivery, QueueStats
from tars.domain.runs import TrainingJob
from tars.domain.workers import WorkerStatus


class WorkerRegistry(Protocol):
    def beat(self, status: WorkerStatus, ttl: float) -> None:
        """Record ``status``; a worker not heard from for ``ttl`` seconds drops out."""
        ...

    def workers(self) -> list[WorkerStatus]: ...

    def remove(self, name: str) -> None: ...


class JobQueue(Protocol):
    # How jobs travel ("redis_stream", "in_process"): the label trace continuity is counted by.
    transport: str
    # Whether the jobs live apart from this process (Redis): only such a queue can lose jobs the
    # database still counts as queued (restarted without its data), and be asked which it holds.
    holds_jobs_apart: bool

    def enqueue(self, job: TrainingJob, trace: dict[str, str] | None = None) -> None:
        """Queue ``job``; ``trace`` is the context its worker continues."""
        ...

    def receive(self, consumer: str, timeout: float) -> Delivery | None:
        """The next job for ``consumer``, or None after ``timeout`` seconds."""
        ...

    def ack(self, delivery: Delivery) -> None: ...

    def keep_alive(self, delivery: Delivery, consumer: str) -> None:
        """Tell the queue ``consumer`` still works on ``delivery``, so nobody claims it."""
        ...

    def release(self, delivery: Delivery) -> None:
        """Hand an unfinished job back for another worker."""
        ...

    def waiting_run_ids(self, algorithm: str) -> set[str]:
        """Runs with a job of the family in the queue, delivered or not (acknowledged ones are gone)."""
        ...

    def stats(self) -> list[QueueStats]:
        """Per family this queue serves, read now (for metrics)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class History:
    """What a channel's replay window holds after a given event id."""

    events: list[Event]
    # The channel's latest event id (0 before its first event).
    last_id: int
    # False when some events after the asked id are gone (older than the window, or from before a
    # restart that lost it): the watcher must reload the channel's state instead of replaying.
    complete: bool


class EventBus(Protocol):
    def publish(self, event: Event) -> Event:
        """Number ``event`` on each of its channels, keep it in their replay windows, and send it
        to every subscriber; returns it with its ids. Safe to call from any thread."""
        ...

    def publish_many(self, events: list[Event]) -> list[Event]:
        """``publish`` for each, in order, in as few round trips as the implementation allows."""
        ...

    async def publish_many_on_loop(self, events: list[Event]) -> list[Event]:
        """`publish_many` from the event loop, which it leaves free meanwhile. Not a thread: handing
        the interpreter's lock to a publishing thread and back cost an ingest request up to its 5 ms
        switch interval each way while the loop was busy."""
        ...

    async def close_on_loop(self) -> None:
        """Close what `publish_many_on_loop` opened for the running loop (it opens anew if used again)."""
        ...

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[Event]]: ...

    async def history(self, channel: str, after: int | None) -> History:
        """The events of ``channel`` after id ``after``, in order; with ``after`` None, none of
        them, only the latest id."""
        ...

    def close(self) -> None: ...


class LeaseTable(Protocol):
    """Replicas of one service that split units of work (agents, for the insight engine) between them.

    Each live replica registers itself for a while and renews that; a replica works on a unit only
    while it holds the unit's lease, which at most one replica holds at a time and which lapses if
    not renewed (its holder died or was cut off), so another can take the unit over.
    """

    def register(self, replica: str, ttl: float) -> None:
        """Say ``replica`` is alive for the next ``ttl`` seconds."""
        ...

    def replicas(self) -> list[str]:
        """The replicas alive now, by name, sorted."""
        ...

    def deregister(self, replica: str) -> None: ...

    def acquire(self, unit: str, replica: str, ttl: float) -> bool:
        """Take ``unit``'s lease for ``ttl`` seconds, or extend it if ``replica`` holds it; False if
        another replica holds it."""
        ...

    def renew(self, units: list[str], replica: str, ttl: float) -> set[str]:
        """Extend the leases ``replica`` still holds among ``units``; those it holds."""
        ...

    def release(self, units: list[str], replica: str) -> None:
        """Give up the leases ``replica`` holds among ``units``."""
        ...

    def close(self) -> None: ...
