"""The two small interfaces every bus implementation provides."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol

from tars.domain.events import Event
from tars.domain.runs import TrainingJob


@dataclass(frozen=True)
class Delivery:
    """One job handed to one worker; acknowledged when its effects are stored."""

    job: TrainingJob
    message_id: str
    redelivered: bool = False
    # The W3C trace context the job was sent with (tars.tracing): its worker continues that trace.
    trace: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerStatus:
    """What a worker says about itself in each heartbeat."""

    name: str
    algorithms: list[str]
    slots: int
    busy: int
    runs: list[str]
    jobs_done: int
    rss_bytes: int
    started_at: float
    last_seen: float
    state: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerStatus:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


class WorkerRegistry(Protocol):
    def beat(self, status: WorkerStatus, ttl: float) -> None:
        """Record ``status``; a worker not heard from for ``ttl`` seconds drops out."""
        ...

    def workers(self) -> list[WorkerStatus]: ...

    def remove(self, name: str) -> None: ...


@dataclass(frozen=True)
class QueueStats:
    """One family's jobs: waiting for a worker, delivered and not yet acknowledged, and how long the
    oldest waiting one has waited (the queue's lag; 0 when none waits)."""

    algorithm: str
    waiting: int
    pending: int
    oldest_waiting_seconds: float


class JobQueue(Protocol):
    # How jobs travel ("redis_stream", "in_process"): the label trace continuity is counted by.
    transport: str

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

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[Event]]: ...

    async def history(self, channel: str, after: int | None) -> History:
        """The events of ``channel`` after id ``after``, in order; with ``after`` None, none of
        them, only the latest id."""
        ...

    def close(self) -> None: ...
