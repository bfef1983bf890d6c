"""Gauges read when Prometheus scrapes: the job queue and the database pool, asked then, not kept.

A process registers what it owns (``watch_queue``, ``watch_database``); the collectors are
registered once, so a process that builds several runtimes (tests) reports its latest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event
from sqlalchemy.pool import QueuePool

from tars.domain.insights import FindingKind, Severity
from tars.domain.jobs import QueueStats
from tars.metrics.catalogue import DB_QUERY_DURATION

log = logging.getLogger(__name__)


# What the queue gauges read at each scrape: the job queue's statistics per family, asked then.
QueueStatsSource = Callable[[], list[QueueStats]]


class _QueueCollector(Collector):
    def __init__(self) -> None:
        self.queue: QueueStatsSource | None = None

    def collect(self) -> Iterator[Metric]:
        if self.queue is None:
            return
        try:
            stats = self.queue()
        except Exception:  # Redis down: the scrape still answers, without these
            log.warning("queue statistics unavailable", exc_info=True)
            return
        waiting = GaugeMetricFamily("tars_queue_depth", "Jobs waiting, not yet delivered", labels=["algorithm"])
        pending = GaugeMetricFamily(
            "tars_queue_pending", "Jobs delivered and not yet acknowledged", labels=["algorithm"]
        )
        age = GaugeMetricFamily(
            "tars_queue_oldest_age_seconds", "Age of the oldest job waiting (0: none waits)", labels=["algorithm"]
        )
        for row in stats:
            waiting.add_metric([row.algorithm], row.waiting)
            pending.add_metric([row.algorithm], row.pending)
            age.add_metric([row.algorithm], row.oldest_waiting_seconds)
        yield from (waiting, pending, age)


class _PoolCollector(Collector):
    def __init__(self) -> None:
        self.engine: Engine | None = None

    def collect(self) -> Iterator[Metric]:
        pool = self.engine.pool if self.engine is not None else None
        if not isinstance(pool, QueuePool):  # SQLite's pool has no size to report
            return
        connections = GaugeMetricFamily("tars_db_pool_connections", "Pool connections by state", labels=["state"])
        connections.add_metric(["checked_out"], pool.checkedout())
        connections.add_metric(["idle"], pool.checkedin())
        capacity = GaugeMetricFamily("tars_db_pool_capacity", "Connections the pool may hold")
        capacity.add_metric([], pool.size() + max(pool._max_overflow, 0))
        yield from (connections, capacity)


# What the insight engine's gauges read at each scrape: the feed lag of each agent it owns, and the
# open insights by (kind, severity) when its sink can count them.
FeedLagSource = Callable[[], dict[str, int]]
OpenInsightsSource = Callable[[], dict[tuple[FindingKind, Severity], int]]


class _InsightCollector(Collector):
    def __init__(self) -> None:
        self.lag: FeedLagSource | None = None
        self.open_insights: OpenInsightsSource | None = None

    def collect(self) -> Iterator[Metric]:
        if self.lag is not None:
            lag = GaugeMetricFamily(
                "tars_insight_feed_lag_events",
                "Events on an agent's channel not yet processed by the insight engine replica that owns it",
                labels=["agent"],
            )
            for agent, events in sorted(self.lag().items()):
                lag.add_metric([agent], events)
            yield lag
        if self.open_insights is not None:
            try:
                counts = self.open_insights()
            except Exception:  # the database away: the scrape still answers, without these
                log.warning("open insights unavailable", exc_info=True)
                return
            opened = GaugeMetricFamily("tars_insights_open", "Open insights", labels=["kind", "severity"])
            for (kind, severity), count in sorted(counts.items()):
                opened.add_metric([kind.value, severity.value], count)
            yield opened


_QUEUE = _QueueCollector()
_POOL = _PoolCollector()
_INSIGHTS = _InsightCollector()
REGISTRY.register(_QUEUE)
REGISTRY.register(_POOL)
REGISTRY.register(_INSIGHTS)


def watch_queue(queue: QueueStatsSource) -> None:
    _QUEUE.queue = queue


def watch_insight_engine(lag: FeedLagSource, open_insights: OpenInsightsSource | None = None) -> None:
    _INSIGHTS.lag = lag
    _INSIGHTS.open_insights = open_insights


_OPERATIONS = {"select": "select", "insert": "insert", "update": "update", "delete": "delete", "copy": "copy"}
_STARTED = "tars_query_started"


def watch_database(engine: Engine) -> None:
    """Time every statement on ``engine`` by kind, and report its pool."""
    _POOL.engine = engine
    if event.contains(engine, "before_cursor_execute", _started):
        return
    event.listen(engine, "before_cursor_execute", _started)
    event.listen(engine, "after_cursor_execute", _finished)


def _started(_conn: Any, _cursor: Any, _statement: str, _parameters: Any, context: Any, _many: bool) -> None:
    if context is not None:
        context.__dict__[_STARTED] = time.perf_counter()


def _finished(_conn: Any, _cursor: Any, statement: str, _parameters: Any, context: Any, _many: bool) -> None:
    started = context.__dict__.get(_STARTED) if context is not None else None
    if started is None:
        return
    words = statement.split(None, 1)
    verb = words[0].lower() if words else ""
    DB_QUERY_DURATION.labels(_OPERATIONS.get(verb, "other")).observe(time.perf_counter() - started)
