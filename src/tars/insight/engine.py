"""The insight engine: one replica's loop over the agents it owns (docs/insights.md, "The engine").

Per owned agent it reads the agent's channel from its checkpoint, decodes the events, routes them to
the agent's detectors (``AgentWatch``), maps the findings' positions to times, hands the observations
to the sink, then stores the checkpoint. Replicas split the agents by rendezvous hashing over the
live ones, and work on an agent only while holding its lease; a checkpoint is written under the epoch
its replica claimed, so a replica that lost an agent cannot move its position.

Order of effects per chunk: observations applied, then checkpoint stored. A replica that dies between
the two leaves observations the next owner produces again; the sink takes a replayed observation as
a no-op. Evaluations are counted as processed when their checkpoint is stored, so each is counted once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import numpy as np

from tars.domain.evaluations import Position
from tars.domain.insight_feed import FeedCheckpoint, FeedRead, RunFacts, agent_channel
from tars.domain.insights import FindingKind, Observation, Severity
from tars.domain.runs import RunStatus
from tars.insight.columns import EvaluationColumns, Ints, decode
from tars.insight.watch import AgentWatch
from tars.metrics.catalogue import INSIGHT_EPISODES_PROCESSED, INSIGHT_EVALUATIONS_PROCESSED
from tars.services.insight_feed import InsightFeed
from tars.version import VERSION

log = logging.getLogger(__name__)


class InsightSink(Protocol):
    """Where the engine hands its observations: the insight records. ``apply`` must be idempotent
    (an observation replayed after a failover changes nothing)."""

    def apply(self, observations: Sequence[Observation]) -> object: ...


@runtime_checkable
class CountsOpenInsights(Protocol):
    """A sink that can also say how many insights are open, by (kind, severity), for /metrics."""

    def open_counts(self) -> dict[tuple[FindingKind, Severity], int]: ...


# Called with an agent and the ids of the evaluations whose checkpoint was just stored.
Committed = Callable[[str, Ints], None]


@dataclass(frozen=True)
class EngineSettings:
    # A lease (and a replica's registration) lapses this long after its last renewal.
    lease_seconds: float = 10.0
    # Renewals, and the look at which replicas are alive and which agents hash here.
    heartbeat_seconds: float = 2.0
    # Every owned agent's channel is read at least this often, announced or not.
    poll_seconds: float = 1.0
    # The agents' list is read again this often (new agents are also found by their first events).
    agents_refresh_seconds: float = 10.0
    # Evaluations per (environment, region) read back to rebuild an agent's detectors.
    replay_evaluations: int = 1500
    # Evaluations read back per page (and checkpointed) while catching up.
    catch_up_page: int = 20_000
    # Evaluations read back from the database whose events may still arrive are dropped from those
    # events for this long; they are published moments after they are stored.
    dedupe_seconds: float = 120.0
    # How far before its checkpoint a catch-up looks for runs that made progress meanwhile (clocks of
    # different hosts set the times compared), and how long ended runs stay in the checkpoint.
    run_margin_seconds: float = 600.0
    forget_runs_seconds: float = 3600.0


def owner_of(agent_id: str, replicas: Sequence[str]) -> str | None:
    """The replica an agent hashes to (rendezvous hashing): the one with the highest hash of the pair.
    A replica that joins takes only the agents it now wins; one that leaves hands only its own."""
    if not replicas:
        return None
    return max(replicas, key=lambda replica: hashlib.blake2b(f"{replica}\0{agent_id}".encode(), digest_size=8).digest())


@dataclass
class _Agent:
    """An owned agent: its checkpoint (as stored), its detectors, and what to drop from its events."""

    checkpoint: FeedCheckpoint
    watch: AgentWatch
    recent_ids: Ints = field(default_factory=lambda: np.empty(0, np.int64))
    recent_until: float = 0.0
    lag: int = 0


class _Lost(Exception):
    """The agent's checkpoint was claimed by another replica: this one no longer owns it."""


class InsightEngine:
    def __init__(
        self,
        feed: InsightFeed,
        sink: InsightSink,
        settings: EngineSettings | None = None,
        *,
        on_committed: Committed | None = None,
    ) -> None:
        self._feed = feed
        self.sink = sink
        self.settings = settings or EngineSettings()
        self._on_committed = on_committed
        self._agents: dict[str, _Agent] = {}
        self._leased: set[str] = set()
        self._to_open: set[str] = set()
        self._to_release: set[str] = set()
        self._lost: set[str] = set()
        self._dirty: set[str] = set()
        self._known: set[str] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self.replicas: list[str] = []
        self.running = False
        self.evaluations_processed = 0
        # The counters read 0 from the start, not nothing: rates over them need a first sample.
        INSIGHT_EVALUATIONS_PROCESSED.labels(VERSION)
        INSIGHT_EPISODES_PROCESSED.labels(VERSION)

    @property
    def replica(self) -> str:
        return self._feed.replica

    def owned(self) -> list[str]:
        return sorted(self._agents)

    def lag(self) -> dict[str, int]:
        """Events on each owned agent's channel after its checkpoint, as last read."""
        return {agent_id: agent.lag for agent_id, agent in self._agents.items()}

    def checkpoint(self, agent_id: str) -> FeedCheckpoint | None:
        agent = self._agents.get(agent_id)
        return agent.checkpoint if agent else None

    def close(self) -> None:
        """Let go of the connections the feed holds (after ``run`` has returned)."""
        self._feed.close()

    def stop(self) -> None:
        """Finish the chunk in hand, hand every agent back and leave (``run`` then returns)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Work until ``stop``; cancelled instead, it leaves as a crashed replica would (its leases
        lapse, and the next owners resume from the stored checkpoints)."""
        self.running = True
        helpers = [
            asyncio.create_task(self._membership(), name="insight-membership"),
            asyncio.create_task(self._announcements(), name="insight-announcements"),
        ]
        try:
            await self._work()
            await self._leave_all()
        finally:
            self.running = False
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    # Which agents this replica works on

    async def _membership(self) -> None:
        settings = self.settings
        agents: list[str] = []
        refreshed = 0.0
        while True:
            try:
                self.replicas = await asyncio.to_thread(self._feed.register, settings.lease_seconds)
                if time.monotonic() - refreshed >= settings.agents_refresh_seconds or self._known - set(agents):
                    agents = await asyncio.to_thread(self._feed.agent_ids)
                    self._known = set(agents)
                    refreshed = time.monotonic()
                replicas = sorted({*self.replicas, self.replica})
                wanted = {agent_id for agent_id in agents if owner_of(agent_id, replicas) == self.replica}
                renewing = set(self._leased)
                held = await asyncio.to_thread(self._feed.renew, sorted(renewing), settings.lease_seconds)
                # Those that lapsed are lost; those the work loop released meanwhile stay released.
                self._lost |= (renewing - held) & self._leased
                self._leased = {agent_id for agent_id in self._leased if agent_id in held or agent_id not in renewing}
                for agent_id in sorted(wanted - held):
                    if self._stopping:
                        break
                    if await asyncio.to_thread(self._feed.acquire, agent_id, settings.lease_seconds):
                        self._leased.add(agent_id)
                        self._to_open.add(agent_id)
                self._to_release = self._leased - wanted
                self._wake.set()
            except Exception:  # Redis or the database away for a moment: try again next beat
                log.warning("insight engine %s: membership beat failed", self.replica, exc_info=True)
            await asyncio.sleep(settings.heartbeat_seconds)

    async def _announcements(self) -> None:
        """Wakes the work loop for an agent as soon as it has a new event; polling covers the rest."""
        while True:
            try:
                async with self._feed.announcements() as agents:
                    async for agent_id in agents:
                        if agent_id in self._agents:
                            self._dirty.add(agent_id)
                            self._wake.set()
                        elif agent_id not in self._known:
                            self._known.add(agent_id)  # a new agent: the next beat reads the list again
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("insight engine %s: announcements lost; resubscribing", self.replica, exc_info=True)
                await asyncio.sleep(1.0)

    # The work loop: one agent at a time, so each agent's detectors are touched by one thread only

    async def _work(self) -> None:
        next_poll = 0.0
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, next_poll - time.monotonic()))
            self._wake.clear()
            if time.monotonic() >= next_poll:
                self._dirty |= set(self._agents)
                next_poll = time.monotonic() + self.settings.poll_seconds
            for agent_id in sorted(self._lost):
                self._agents.pop(agent_id, None)  # another replica has it: its state here is stale
                self._to_open.discard(agent_id)
            self._lost.clear()
            for agent_id in sorted(self._to_release):
                await self._release(agent_id)
            for agent_id in sorted(self._to_open):
                if self._stopping:
                    break
                await self._guarded(agent_id, self._open)
            dirty, self._dirty = self._dirty, set()
            for agent_id in sorted(dirty):
                if self._stopping:
                    break
                if agent_id in self._agents and agent_id not in self._lost:
                    await self._guarded(agent_id, self._advance)

    async def _guarded(self, agent_id: str, step: Callable[[str], Awaitable[None]]) -> None:
        try:
            await step(agent_id)
        except _Lost:
            log.info("insight engine %s: agent %s taken over by another replica", self.replica, agent_id)
            self._agents.pop(agent_id, None)
            self._leased.discard(agent_id)
            self._to_open.discard(agent_id)
        except Exception:
            # Its state may now be ahead of its checkpoint: rebuilt from the checkpoint on the next turn.
            log.exception("insight engine %s: agent %s failed; reopening it", self.replica, agent_id)
            self._agents.pop(agent_id, None)
            if agent_id in self._leased:
                self._to_open.add(agent_id)
            await asyncio.sleep(min(1.0, self.settings.poll_seconds))

    async def _release(self, agent_id: str) -> None:
        agent = self._agents.pop(agent_id, None)
        self._to_open.discard(agent_id)
        self._to_release.discard(agent_id)
        self._leased.discard(agent_id)
        try:
            if agent is not None:
                await asyncio.to_thread(self._feed.leave, agent.checkpoint)
            await asyncio.to_thread(self._feed.release, [agent_id])
        except Exception:  # the lease lapses by itself
            log.warning("insight engine %s: releasing %s failed", self.replica, agent_id, exc_info=True)

    async def _leave_all(self) -> None:
        for agent_id in sorted(self._agents):
            await self._release(agent_id)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._feed.release, sorted(self._leased))
            await asyncio.to_thread(self._feed.deregister)
        self._leased.clear()

    # Taking an agent: its checkpoint claimed, its detectors rebuilt

    async def _open(self, agent_id: str) -> None:
        self._to_open.discard(agent_id)
        if agent_id in self._agents or agent_id not in self._leased:
            return
        # The channel's end is read before the database: whatever is stored after it is in the channel.
        channel_end = await self._feed.channel_end(agent_id)
        agent = await asyncio.to_thread(self._restore, agent_id, channel_end)
        agent.lag = max(0, channel_end - agent.checkpoint.last_event_id)
        self._agents[agent_id] = agent
        self._dirty.add(agent_id)

    def _restore(self, agent_id: str, channel_end: int) -> _Agent:
        checkpoint, made = self._feed.claim(agent_id, channel_end)
        watch = AgentWatch(agent_id, self._feed)
        agent = _Agent(checkpoint, watch)
        per_subject = self.settings.replay_evaluations
        if made:
            # A new agent for the engine: watched from the channel's end. Its recent evaluations warm
            # the detectors up (baselines) without findings: they were news before the engine looked.
            rows = self._feed.recent_evaluations(agent_id, None, per_subject)
            columns = EvaluationColumns.of_records(rows)
            watch.evaluations(columns, emit=False)
            self._remember(agent, columns)
            log.info("insight engine %s: watching %s from event %d", self.replica, agent_id, channel_end)
        else:
            # Taken over or restarted: the detectors as they were at the checkpoint, from the evaluations
            # up to it (their findings were handed on by whoever processed them).
            if checkpoint.last_evaluation is not None:
                rows = self._feed.recent_evaluations(agent_id, checkpoint.last_evaluation, per_subject)
                watch.evaluations(EvaluationColumns.of_records(rows), emit=False)
            self._restore_runs(watch, checkpoint.runs)
            log.info(
                "insight engine %s: resuming %s after event %d (epoch %d)",
                self.replica,
                agent_id,
                checkpoint.last_event_id,
                checkpoint.epoch,
            )
        return agent

    def _restore_runs(self, watch: AgentWatch, runs: dict[str, int]) -> None:
        watch.episodes_seen = dict(runs)
        if runs:
            facts = self._feed.run_facts(list(runs))
            for run_id in runs:
                found = facts.get(run_id)
                if found is None or found.finished_at is not None:
                    watch.ended[run_id] = found.finished_at.timestamp() if found and found.finished_at else 0.0

    def _remember(self, agent: _Agent, columns: EvaluationColumns) -> None:
        """Evaluations read back from the database whose events may still come: dropped from them."""
        recent = columns.ids[columns.times >= time.time() - self.settings.dedupe_seconds]
        if recent.size:
            agent.recent_ids = np.union1d(agent.recent_ids, recent)
            agent.recent_until = time.monotonic() + self.settings.dedupe_seconds

    # Advancing an agent

    async def _advance(self, agent_id: str) -> None:
        agent = self._agents[agent_id]
        read = await self._feed.read(agent_id, agent.checkpoint.last_event_id)
        agent.lag = max(0, read.last_id - agent.checkpoint.last_event_id)
        if read.complete and not read.events:
            return
        await asyncio.to_thread(self._process, agent_id, agent, read)
        agent.lag = max(0, read.last_id - agent.checkpoint.last_event_id)

    def _process(self, agent_id: str, agent: _Agent, read: FeedRead) -> None:
        decoded = decode(read.events)
        window = decoded.evaluations
        if not read.complete:
            self._catch_up(agent_id, agent, window.ids)
        if agent.recent_ids.size:
            if time.monotonic() < agent.recent_until:
                window = window.take(~np.isin(window.ids, agent.recent_ids))
            else:
                agent.recent_ids = np.empty(0, np.int64)
        watch = agent.watch
        observations: list[Observation] = []
        for run_id in decoded.started:
            watch.run_started(run_id)
        observations += watch.evaluations(window)
        for run_id, items in decoded.episodes.items():
            observations += watch.episodes(run_id, items)
        for run_id, status in decoded.finished:
            watch.run_finished(run_id, status)
        # After the last event read; with none (a channel that lost its events), at the channel's end.
        last_event_id = read.events[-1].ids.get(agent_channel(agent_id), read.last_id) if read.events else read.last_id
        self._commit(agent_id, agent, observations, window, last_event_id=last_event_id)

    def _catch_up(self, agent_id: str, agent: _Agent, window_ids: Ints) -> None:
        """The channel no longer holds every event after the checkpoint: what they said is read back from
        the database, after the checkpoint's last evaluation, a page at a time (each checkpointed), less
        what the window still holds (processed from there). Then the runs that made progress meanwhile."""
        settings = self.settings
        log.warning("insight engine %s: %s is behind its channel's window; catching up", self.replica, agent_id)
        after = agent.checkpoint.last_evaluation
        while True:
            rows = self._feed.evaluations_after(agent_id, after, settings.catch_up_page)
            if not rows:
                break
            after = Position(rows[-1].created_at, rows[-1].id)
            columns = EvaluationColumns.of_records(rows)
            fresh = columns.take(~np.isin(columns.ids, window_ids))
            observations = agent.watch.evaluations(fresh)
            self._commit(agent_id, agent, observations, fresh, last_evaluation=after)
            self._remember(agent, fresh)
            if len(rows) < settings.catch_up_page:
                break
        since = agent.checkpoint.updated_at
        if since is not None:
            since -= timedelta(seconds=settings.run_margin_seconds)
        observations = []
        for run in self._feed.runs_since(agent_id, since):
            observations += self._catch_up_run(agent.watch, run)
        self._commit(agent_id, agent, observations, EvaluationColumns.empty())

    def _catch_up_run(self, watch: AgentWatch, run: RunFacts) -> list[Observation]:
        recorded = self._feed.episodes(run.run_id, watch.episodes_seen.get(run.run_id, 0))
        found = watch.episodes(run.run_id, [(item.episode, item.created_at.timestamp()) for item in recorded])
        if run.finished_at is not None and recorded:
            watch.run_finished(run.run_id, RunStatus(run.status))
        return found

    def _commit(
        self,
        agent_id: str,
        agent: _Agent,
        observations: list[Observation],
        processed: EvaluationColumns,
        *,
        last_event_id: int | None = None,
        last_evaluation: Position | None = None,
    ) -> None:
        """Hand the observations on, then store the checkpoint that covers them (fenced by its epoch)."""
        if observations:
            self.sink.apply(observations)
        current = agent.checkpoint
        positions = [p for p in (current.last_evaluation, last_evaluation, processed.last_position()) if p is not None]
        agent.watch.forget_ended(time.time() - self.settings.forget_runs_seconds)
        checkpoint = replace(
            current,
            last_event_id=current.last_event_id if last_event_id is None else last_event_id,
            last_evaluation=max(positions) if positions else None,
            evaluations_processed=current.evaluations_processed + processed.size,
            runs=dict(agent.watch.episodes_seen),
        )
        episodes, agent.watch.episodes_processed = agent.watch.episodes_processed, 0
        if checkpoint == current:
            INSIGHT_EPISODES_PROCESSED.labels(VERSION).inc(episodes)
            return
        if not self._feed.save(checkpoint):
            raise _Lost(agent_id)
        agent.checkpoint = replace(checkpoint, updated_at=datetime.now(UTC))
        INSIGHT_EPISODES_PROCESSED.labels(VERSION).inc(episodes)
        if processed.size:
            self.evaluations_processed += processed.size
            INSIGHT_EVALUATIONS_PROCESSED.labels(VERSION).inc(processed.size)
            if self._on_committed is not None:
                self._on_committed(agent_id, processed.ids)
