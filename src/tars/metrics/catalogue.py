"""Every metric T.A.R.S. exports, named once (docs/metrics.md is their catalogue).

Label values are always from bounded sets: route templates, stored agents, fixed lists.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from tars.metrics.batch import BatchHistogram

# --- HTTP ---------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests handled", ["service", "method", "route", "code", "version"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request duration",
    ["service", "method", "route", "version"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# --- evaluations ----------------------------------------------------------------------------------
EVALUATIONS = Counter(
    "tars_evaluations_total", "Evaluations stored", ["agent_id", "environment", "region", "status", "version"]
)
REWARD_BUCKETS = (-1000, -500, -200, -100, 0, 10, 50, 100, 200, 300, 400, 500)
EVALUATION_REWARD = BatchHistogram(
    "tars_evaluation_reward", "Reward of stored evaluations", ["agent_id", "environment", "version"], REWARD_BUCKETS
)
EVALUATION_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
EVALUATION_DURATION = BatchHistogram(
    "tars_evaluation_duration_seconds",
    "How long each evaluation episode took",
    ["agent_id", "environment", "region", "version"],
    EVALUATION_DURATION_BUCKETS,
)

# --- training -------------------------------------------------------------------------------------
TRAINING_RUNS = Counter("tars_training_runs_total", "Training runs by outcome", ["agent_id", "status", "version"])
TRAINING_EPISODES = Counter("tars_training_episodes_total", "Training episodes finished", ["agent_id", "version"])
TRAINING_STEPS = Counter("tars_training_steps_total", "Environment steps trained", ["agent_id", "version"])
TRAINING_EPISODE_REWARD = BatchHistogram(
    "tars_training_episode_reward", "Reward of finished training episodes", ["agent_id", "version"], REWARD_BUCKETS
)
TRAINING_LOSS = Gauge("tars_training_loss", "Latest training loss reported", ["agent_id", "kind", "version"])
TRAINING_STEPS_PER_SECOND = Gauge(
    "tars_training_steps_per_second", "Environment steps per second in the latest report", ["agent_id", "version"]
)

# --- workers --------------------------------------------------------------------------------------
_WORKER = ["worker", "algorithms"]
WORKER_RSS = Gauge("tars_worker_rss_bytes", "Resident memory of a worker and its training processes", _WORKER)
WORKER_HEARTBEAT = Gauge("tars_worker_heartbeat_timestamp_seconds", "Time of a worker's last heartbeat", _WORKER)
WORKER_BUSY = Gauge("tars_worker_busy_slots", "Jobs a worker is running now", _WORKER)
WORKER_JOBS = Gauge("tars_worker_jobs_done", "Jobs a worker has finished since it started", _WORKER)

# --- WebSocket ------------------------------------------------------------------------------------
WS_CONNECTIONS = Gauge("tars_ws_connections", "WebSocket connections open now")
WS_OPENED = Counter("tars_ws_connections_opened_total", "WebSocket connections accepted")
WS_RESUMED = Counter("tars_ws_resumed_subscriptions_total", "Subscriptions resumed from a last event id")
WS_EVENTS_SENT = Counter("tars_ws_events_sent_total", "Events sent to WebSocket clients, live or replayed")
WS_EVENTS_REPLAYED = Counter("tars_ws_events_replayed_total", "Events sent from a channel's replay window")
WS_RESETS = Counter("tars_ws_resets_total", "Subscriptions told to reload: their last event id was out of the window")
WS_SLOW_CONSUMERS = Counter("tars_ws_slow_consumers_dropped_total", "WebSocket clients closed as too far behind")

# --- insight engine ------------------------------------------------------------------------------
# Counted when the checkpoint that covers them is stored: once each, whichever replica processed them.
INSIGHT_EVALUATIONS_PROCESSED = Counter(
    "tars_insight_evaluations_processed_total", "Evaluations the insight engine processed", ["version"]
)
INSIGHT_EPISODES_PROCESSED = Counter(
    "tars_insight_episodes_processed_total", "Training episodes the insight engine processed", ["version"]
)

# --- database -------------------------------------------------------------------------------------
DB_QUERY_DURATION = Histogram(
    "tars_db_query_duration_seconds",
    "Statement time by kind",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

# --- tracing --------------------------------------------------------------------------------------
TRACE_MESSAGES = Counter(
    "tars_trace_messages_total",
    "Messages consumed, and whether they carried their producer's trace context",
    ["transport", "continued"],
)
