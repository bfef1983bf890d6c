"""The insight engine's feed: where it stands in each agent's stream of events, and what it reads
back from the database when the stream alone cannot tell it (docs/insights.md, "The feed").

An agent is the unit of work: every event that carries an ``agent_id`` is on the channel
``agent:<id>`` (its evaluations, batched or single, and its runs' progress and lifecycle), numbered
in order, so one replica reading one agent's channel from a checkpoint sees all of it, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tars.domain.evaluations import Position
from tars.domain.events import Event
from tars.domain.progress import EpisodeFinished

AGENT_CHANNEL_PREFIX = "agent:"


def agent_channel(agent_id: str) -> str:
    return f"{AGENT_CHANNEL_PREFIX}{agent_id}"


@dataclass(frozen=True)
class FeedCheckpoint:
    """How far the engine has processed one agent, stored after the findings up to it were handed on.

    ``last_event_id`` is on the agent's channel; ``last_evaluation`` is the (created_at, id) of the
    newest evaluation processed, from which the database is read when the channel's replay window no
    longer reaches back to ``last_event_id``. ``runs`` holds the training runs in progress as last
    seen (run id -> last episode processed). ``epoch`` fences writes: a replica that takes the agent
    over raises it, and a checkpoint written under an older epoch is refused (its writer lost the
    agent). ``evaluations_processed`` counts every evaluation processed under this checkpoint, once.
    """

    agent_id: str
    last_event_id: int
    last_evaluation: Position | None
    evaluations_processed: int
    runs: dict[str, int] = field(default_factory=dict)
    epoch: int = 0
    owner: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class RunFacts:
    """What the engine needs to know of a run its events do not say: where it trains, and the run it
    continued from (the one its model is compared with)."""

    run_id: str
    agent_id: str
    environment: str
    source_run_id: str | None
    status: str
    finished_at: datetime | None


@dataclass(frozen=True)
class RecordedEpisode:
    """A training episode as stored, read back to catch up or to rebuild a run's detector."""

    run_id: str
    episode: EpisodeFinished
    created_at: datetime


@dataclass(frozen=True)
class FeedRead:
    """An agent's events after a given id, from its channel's replay window."""

    events: list[Event]
    # The channel's latest event id.
    last_id: int
    # False when some events after the asked id are no longer in the window (overrun, or lost with
    # a Redis restart): what they said must be read back from the database.
    complete: bool
