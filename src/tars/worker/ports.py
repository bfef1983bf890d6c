"""What a worker needs of the job queue and the worker registry, declared here so that the worker
knows neither the bus package nor which implementation (in-process or Redis) it was handed:
`tars.wiring` builds those, and any `tars.bus` queue or registry fits these shapes."""

from __future__ import annotations

from typing import Protocol

from tars.domain.jobs import Delivery
from tars.domain.workers import WorkerStatus


class JobSource(Protocol):
    # How jobs travel ("redis_stream", "in_process"): the label trace continuity is counted by.
    @property
    def transport(self) -> str: ...

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


class Heartbeats(Protocol):
    def beat(self, status: WorkerStatus, ttl: float) -> None:
        """Record ``status``; a worker not heard from for ``ttl`` seconds drops out."""
        ...

    def remove(self, name: str) -> None: ...
