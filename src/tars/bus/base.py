"""The two small interfaces every bus implementation provides."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from tars.domain.events import Event
from tars.domain.runs import TrainingJob


@dataclass(frozen=True)
class Delivery:
    """One job handed to one worker; acknowledged when its effects are stored."""

    job: TrainingJob
    message_id: str
    redelivered: bool = False


class JobQueue(Protocol):
    def enqueue(self, job: TrainingJob) -> None: ...

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

    def close(self) -> None: ...


class EventBus(Protocol):
    def publish(self, event: Event) -> None:
        """Send ``event`` to every subscriber; safe to call from any thread."""
        ...

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[Event]]: ...

    def close(self) -> None: ...
