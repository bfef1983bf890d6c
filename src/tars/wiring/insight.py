"""Builds an insight-engine replica: its leases (in-process when embedded, Redis when distributed),
its feed, and the insight service its observations go to."""

from __future__ import annotations

from tars.bus.base import LeaseTable
from tars.bus.memory_leases import InProcessLeases
from tars.bus.redis_leases import RedisLeases
from tars.insight.engine import Committed, EngineSettings, InsightEngine, InsightSink
from tars.services.insight_feed import ENGINE_GROUP, InsightFeed
from tars.services.runtime import Runtime
from tars.settings import Settings


def engine_settings(settings: Settings) -> EngineSettings:
    return EngineSettings(
        lease_seconds=settings.insight_lease_seconds,
        heartbeat_seconds=settings.insight_heartbeat_seconds,
        poll_seconds=settings.insight_poll_seconds,
        replay_evaluations=settings.insight_replay_evaluations,
    )


def build_leases(settings: Settings) -> LeaseTable:
    # Embedded: one process, one replica, owning every agent.
    if settings.redis_url is None:
        return InProcessLeases()
    return RedisLeases(settings.redis_url, ENGINE_GROUP)


def build_insight_engine(
    runtime: Runtime,
    sink: InsightSink | None = None,
    *,
    replica: str | None = None,
    on_committed: Committed | None = None,
) -> InsightEngine:
    """A replica named ``replica`` (settings.insight_replica by default). Its observations go to
    ``sink``: by default the runtime's insight service, which keeps them as insight records."""
    settings = runtime.settings
    leases = build_leases(settings)
    feed = InsightFeed(runtime.sessions, runtime.bus, leases, replica=replica or settings.insight_replica)
    return InsightEngine(feed, sink or runtime.insights, engine_settings(settings), on_committed=on_committed)
