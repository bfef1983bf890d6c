"""The insight engine's door to the bus and the database: each agent's events in order, the leases
that split the agents between replicas, the checkpoints, and the evaluations and episodes it reads
back to catch up or to rebuild its detectors (docs/insights.md, "The feed")."""

from __future__ import annotations

import heapq
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from tars.bus.base import EventBus, LeaseTable
from tars.domain.evaluations import Evaluation, Position
from tars.domain.events import Event
from tars.domain.insight_feed import FeedCheckpoint, FeedRead, RecordedEpisode, RunFacts, agent_channel
from tars.storage import insight_feed as stored
from tars.storage.database import SessionFactory, transaction

# The lease group the engine's replicas share (Redis keys are named after it).
ENGINE_GROUP = "insight-engine"


class InsightFeed:
    """One replica's view of the feed; ``replica`` names it in leases and checkpoints."""

    def __init__(self, sessions: SessionFactory, bus: EventBus, leases: LeaseTable, *, replica: str) -> None:
        self._sessions = sessions
        self._bus = bus
        self._leases = leases
        self.replica = replica

    # Replicas and leases

    def register(self, ttl: float) -> list[str]:
        """Say this replica is alive for ``ttl`` seconds; every replica alive now."""
        self._leases.register(self.replica, ttl)
        return self._leases.replicas()

    def deregister(self) -> None:
        self._leases.deregister(self.replica)

    def acquire(self, agent_id: str, ttl: float) -> bool:
        return self._leases.acquire(agent_id, self.replica, ttl)

    def renew(self, agent_ids: list[str], ttl: float) -> set[str]:
        return self._leases.renew(agent_ids, self.replica, ttl)

    def release(self, agent_ids: list[str]) -> None:
        self._leases.release(agent_ids, self.replica)

    def close(self) -> None:
        self._leases.close()

    def agent_ids(self) -> list[str]:
        with self._sessions() as session:
            return stored.agent_ids(session)

    # Positions

    async def channel_end(self, agent_id: str) -> int:
        """The agent channel's latest event id."""
        return (await self._bus.history(agent_channel(agent_id), None)).last_id

    @asynccontextmanager
    async def announcements(self) -> AsyncIterator[AsyncIterator[str]]:
        """The agent of each event published from now on (a hint to read its channel: the channel,
        not this, is what the engine processes, so an announcement lost is only a delay)."""
        async with self._bus.subscribe() as events:
            yield _agents_of(events)

    async def read(self, agent_id: str, after: int) -> FeedRead:
        history = await self._bus.history(agent_channel(agent_id), after)
        return FeedRead(history.events, history.last_id, history.complete)

    def claim(self, agent_id: str, channel_end: int) -> tuple[FeedCheckpoint, bool]:
        """The agent's checkpoint, taken for this replica (older holders can no longer write it); made
        at ``channel_end`` if there was none, which the second value says."""
        try:
            with transaction(self._sessions) as session:
                return stored.claim(session, agent_id, self.replica, channel_end)
        except IntegrityError:  # made by another replica a moment ago (a lease that just changed hands)
            with transaction(self._sessions) as session:
                return stored.claim(session, agent_id, self.replica, channel_end)

    def save(self, checkpoint: FeedCheckpoint) -> bool:
        """Store ``checkpoint``; False when another replica has taken the agent since (nothing written)."""
        with transaction(self._sessions) as session:
            return stored.save(session, checkpoint)

    def leave(self, checkpoint: FeedCheckpoint) -> None:
        """Mark the agent as no longer held by this replica (its position stays)."""
        with transaction(self._sessions) as session:
            stored.release(session, checkpoint.agent_id, self.replica, checkpoint.epoch)

    def checkpoints(self, agent_ids: Iterable[str] | None = None) -> dict[str, FeedCheckpoint]:
        with self._sessions() as session:
            return stored.checkpoints(session, agent_ids)

    # Reading the database back

    def evaluations_after(self, agent_id: str, after: Position | None, limit: int) -> list[Evaluation]:
        """The agent's evaluations after ``after``, oldest first: to catch up on what the channel lost."""
        with self._sessions() as session:
            return stored.evaluations_after(session, agent_id, after, limit)

    def recent_evaluations(self, agent_id: str, up_to: Position | None, per_subject: int) -> list[Evaluation]:
        """The latest ``per_subject`` evaluations of each (environment, region) of the agent at or
        before ``up_to`` (the latest stored, if None), oldest first: to rebuild its detectors."""
        with self._sessions() as session:
            parts = [
                stored.recent_evaluations(session, agent_id, environment, region, up_to, per_subject)
                for environment, region in stored.subjects(session, agent_id)
            ]
        return list(heapq.merge(*parts, key=lambda row: (row.created_at, row.id)))

    def run_facts(self, run_ids: Iterable[str]) -> dict[str, RunFacts]:
        with self._sessions() as session:
            return stored.run_facts(session, run_ids)

    def runs_since(self, agent_id: str, since: datetime | None) -> list[RunFacts]:
        with self._sessions() as session:
            return stored.runs_since(session, agent_id, since)

    def episodes(self, run_id: str, after: int, up_to: int | None = None) -> list[RecordedEpisode]:
        with self._sessions() as session:
            return stored.episodes(session, run_id, after, up_to)

    def throughput_history(self, agent_id: str, runs: int) -> list[float]:
        with self._sessions() as session:
            return stored.throughput_history(session, agent_id, runs)


async def _agents_of(events: AsyncIterator[Event]) -> AsyncIterator[str]:
    async for event in events:
        agent_id = event.data.get("agent_id")
        if agent_id:
            yield str(agent_id)
