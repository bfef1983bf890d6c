"""Prometheus metrics shared by every service; label values are always from bounded sets."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

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
EVALUATION_REWARD = Histogram(
    "tars_evaluation_reward",
    "Reward of stored evaluations",
    ["agent_id", "environment", "version"],
    buckets=(-1000, -500, -200, -100, 0, 10, 50, 100, 200, 300, 400, 500),
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
        histogram = EVALUATION_REWARD.labels(agent_id, environment, VERSION)
        for reward in values:
            histogram.observe(reward)


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
