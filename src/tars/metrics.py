"""Prometheus metrics shared by every service; label values are always from bounded sets."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from tars.version import VERSION

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests handled", ["service", "method", "route", "code", "version"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request duration",
    ["service", "method", "route", "version"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
EVALUATIONS = Counter(
    "tars_evaluations_total", "Evaluations stored", ["agent_id", "environment", "region", "status", "version"]
)


class BatchHistogram(Collector):
    """A histogram that takes many observations at once. prometheus_client's takes one a call, at
    about a microsecond each: a millisecond of every 1,000-evaluation batch, under the GIL."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]) -> None:
        self._name, self._documentation, self._labelnames = name, documentation, list(labelnames)
        self._bounds = tuple(sorted(buckets))
        self._lock = threading.Lock()
        # per label values: observations in each bucket (not cumulative; the last is above every
        # bound), and their sum
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
        REGISTRY.register(self)

    def observe_many(self, labels: tuple[str, ...], values: Sequence[float]) -> None:
        counts = [0] * (len(self._bounds) + 1)
        for value in values:
            counts[bisect_left(self._bounds, value)] += 1  # the first bound at or above it: "le"
        total = sum(values)
        with self._lock:
            kept, kept_sum = self._series.setdefault(labels, ([0] * len(counts), [0.0]))
            for index, count in enumerate(counts):
                kept[index] += count
            kept_sum[0] += total

    def collect(self) -> Iterator[Metric]:
        # Samples written out as prometheus_client's Histogram writes them: HistogramMetricFamily
        # would leave out _count too when a bound is negative (rewards' are). _sum goes then, as
        # OpenMetrics asks: a sum of negative and positive values says nothing of a histogram.
        family = Metric(self._name, self._documentation, "histogram")
        with self._lock:
            series = [(labels, list(counts), total[0]) for labels, (counts, total) in self._series.items()]
        for labels, counts, total in series:
            named = dict(zip(self._labelnames, labels, strict=True))
            cumulative = list(accumulate(counts))
            for bound, count in zip((*(_go_float(bound) for bound in self._bounds), "+Inf"), cumulative, strict=True):
                family.add_sample(f"{self._name}_bucket", {**named, "le": bound}, float(count))
            family.add_sample(f"{self._name}_count", named, float(cumulative[-1]))
            if self._bounds[0] >= 0:
                family.add_sample(f"{self._name}_sum", named, total)
        yield family


def _go_float(bound: float) -> str:
    # How Prometheus clients write "le": -1000.0, 0.0, 10.0
    return repr(float(bound))


REWARD_BUCKETS = (-1000, -500, -200, -100, 0, 10, 50, 100, 200, 300, 400, 500)
EVALUATION_REWARD = BatchHistogram(
    "tars_evaluation_reward", "Reward of stored evaluations", ["agent_id", "environment", "version"], REWARD_BUCKETS
)
TRAINING_RUNS = Counter("tars_training_runs_total", "Training runs by outcome", ["agent_id", "status", "version"])
TRAINING_EPISODES = Counter("tars_training_episodes_total", "Training episodes finished", ["agent_id", "version"])


def count_evaluation(agent_id: str, environment: str, region: str, status: str, reward: float) -> None:
    count_evaluations([(agent_id, environment, region, status, reward)])


def count_evaluations(evaluations: Iterable[tuple[str, str, str, str, float]]) -> None:
    """(agent, environment, region, status, reward) of each; labels looked up once per group."""
    counts: dict[tuple[str, str, str, str], int] = {}
    rewards: dict[tuple[str, str], list[float]] = {}
    for agent_id, environment, region, status, reward in evaluations:
        key = (agent_id, environment, region, status)
        counts[key] = counts.get(key, 0) + 1
        rewards.setdefault((agent_id, environment), []).append(reward)
    for key, count in counts.items():
        EVALUATIONS.labels(*key, VERSION).inc(count)
    for (agent_id, environment), values in rewards.items():
        EVALUATION_REWARD.observe_many((agent_id, environment, VERSION), values)


WORKER_RSS = Gauge("tars_worker_rss_bytes", "Resident memory of a worker and its training processes", ["worker"])
WORKER_HEARTBEAT = Gauge("tars_worker_heartbeat_timestamp_seconds", "Time of a worker's last heartbeat", ["worker"])
WORKER_BUSY = Gauge("tars_worker_busy_slots", "Jobs a worker is running now", ["worker"])
WORKER_JOBS = Gauge("tars_worker_jobs_done", "Jobs a worker has finished since it started", ["worker"])

WS_CONNECTIONS = Gauge("tars_ws_connections", "WebSocket connections open now")
WS_RESUMED = Counter("tars_ws_resumed_subscriptions_total", "Subscriptions resumed from a last event id")
WS_EVENTS_SENT = Counter("tars_ws_events_sent_total", "Events sent to WebSocket clients, live or replayed")
WS_EVENTS_REPLAYED = Counter("tars_ws_events_replayed_total", "Events sent from a channel's replay window")
WS_RESETS = Counter("tars_ws_resets_total", "Subscriptions told to reload: their last event id was out of the window")
WS_SLOW_CONSUMERS = Counter("tars_ws_slow_consumers_dropped_total", "WebSocket clients closed as too far behind")
