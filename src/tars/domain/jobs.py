"""A job as the queue hands it out, and what the queue says about its backlog."""

from __future__ import annotations

from dataclasses import dataclass, field

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
class QueueStats:
    """One family's jobs: waiting for a worker, delivered and not yet acknowledged, and how long the
    oldest waiting one has waited (the queue's lag; 0 when none waits)."""

    algorithm: str
    waiting: int
    pending: int
    oldest_waiting_seconds: float
