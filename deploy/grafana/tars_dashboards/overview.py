"""tars-overview: the whole system on one page, read from the `tars:*` recording rules only.

Rules are computed once by Prometheus; a page of some eighty panels on raw histograms would make
every refresh re-aggregate them all, per viewer. The rules (deploy/prometheus/rules) already drop
job/instance, so replicas add up, and keep the labels these panels group by. A panel over all traffic
reads the coarsest rule that has its labels (tars:http_requests_by_code, _by_route): the finest one,
tars:http_requests, has as many series as the raw counter, and a day of it is too slow to plot.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as models

from .panels import BAD_HIGH, GOOD_HIGH, Query, Section, dashboard, gauge, stat, table, timeseries

UID = "tars-overview"

# SLO objectives, as deploy/prometheus/rules/slo.yml states them.
API_LATENCY_OBJECTIVE = 0.95
ERROR_RATE_OBJECTIVE = 0.99
EVALUATION_SUCCESS_OBJECTIVE = 0.99
# Burn rates: above 1 the budget runs out before the SLO period ends; 14.4 (1 h window) and 6 (6 h)
# are where the multiwindow alerts page.
BURN_RATE = ((None, "green"), (1, "orange"), (14.4, "red"))
BURN_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d")
TOP = 10


def _objective(target: float) -> tuple[tuple[float | None, str], ...]:
    return ((None, "red"), (target, "green"))


def _health() -> Section:
    return Section(
        "Health",
        [
            stat("Requests per second", Query("sum(tars:http_requests_by_code:rate1m)"), unit="reqps"),
            stat(
                "Server error ratio",
                Query('sum(tars:http_requests_by_code:rate5m{code=~"5.."}) / sum(tars:http_requests_by_code:rate5m)'),
                unit="percentunit",
                thresholds=BAD_HIGH,
            ),
            stat(
                "Slowest service p95",
                Query("max(tars:http_request_latency_by_service:p95:5m)"),
                unit="s",
                # The latency SLO's threshold: 95 % of requests within 150 ms.
                thresholds=((None, "green"), (0.15, "red")),
            ),
            stat("Evaluations per second", Query("sum(tars:evaluations:rate1m)"), unit="ops"),
            stat(
                "Evaluation success",
                Query("tars:slo_compliance:evaluation_success"),
                unit="percentunit",
                thresholds=GOOD_HIGH,
            ),
            stat("Training steps per second", Query("sum(tars:training_steps:rate1m)"), unit="short"),
            stat(
                "Workers alive",
                Query("sum(tars:workers:count)"),
                thresholds=((None, "red"), (1, "green")),
                decimals=0,
            ),
            stat("Jobs waiting", Query("sum(tars:queue_depth:max)"), decimals=0),
            stat(
                "Queue lag",
                Query("max(tars:queue_oldest_age_seconds:max)"),
                unit="s",
                thresholds=((None, "green"), (60, "orange"), (300, "red")),
            ),
            stat("WebSocket connections", Query("tars:ws_connections:sum"), decimals=0),
            stat(
                "Busiest database pool",
                Query("max(tars:db_pool_utilisation:ratio)"),
                unit="percentunit",
                thresholds=((None, "green"), (0.7, "orange"), (0.9, "red")),
            ),
            stat(
                "Trace continuity (worst transport)",
                Query("min(tars:trace_continuity:ratio_rate5m)"),
                unit="percentunit",
                thresholds=GOOD_HIGH,
            ),
        ],
    )


# Every insight-engine replica exports the same counts: tars:insights_open:max counts each once.
INSIGHTS_OPEN = "tars:insights_open:max"


def _insights() -> Section:
    return Section(
        "Insights",
        [
            stat(
                "Critical insights open",
                Query(f'sum({INSIGHTS_OPEN}{{severity="critical"}})'),
                description="Open or acknowledged; TarsCriticalInsightOpen pages while there is one.",
                thresholds=((None, "green"), (1, "red")),
                decimals=0,
                height=8,
            ),
            stat(
                "Insights open",
                Query(f"sum({INSIGHTS_OPEN})"),
                description="Open or acknowledged, every kind and severity.",
                thresholds=((None, "green"), (1, "orange")),
                decimals=0,
                height=8,
            ),
            timeseries(
                "Open insights by kind and severity",
                Query(f"{INSIGHTS_OPEN} > 0", "{{severity}} {{kind}}"),
                description="Held open by the insight engine (docs/insights.md): `tars insights list --state active`.",
                stacked=True,
                min_value=0,
                width=16,
            ),
            table(
                "Critical insights by kind",
                Query(f'{INSIGHTS_OPEN}{{severity="critical"}} > 0'),
                columns=["open"],
                description="`tars insights list --state active --severity critical --kind KIND` lists them.",
                height=6,
            ),
            table(
                "Insights open now",
                Query(f"{INSIGHTS_OPEN} > 0"),
                columns=["open"],
                height=6,
            ),
        ],
    )


def _slo() -> Section:
    def burn_rates(slo: str) -> list[Query]:
        # The worst service per window: one curve per window keeps the panel legible.
        return [Query(f"max(tars:slo_burn_rate:{slo}:{window})", window) for window in BURN_WINDOWS]

    return Section(
        "SLOs and error budgets",
        [
            gauge(
                "API latency SLO (95 % within 150 ms)",
                Query("min(tars:slo_compliance:api_latency)"),
                description="Share of requests answered within 150 ms over 5 minutes, worst service.",
                min_value=0.8,
                thresholds=_objective(API_LATENCY_OBJECTIVE),
            ),
            gauge(
                "Error-rate SLO (99 % not 5xx)",
                Query("min(tars:slo_compliance:error_rate)"),
                description="Share of requests that were not a server error over 5 minutes, worst service.",
                min_value=0.9,
                thresholds=_objective(ERROR_RATE_OBJECTIVE),
            ),
            gauge(
                "Evaluation success SLO (99 % completed)",
                Query("tars:slo_compliance:evaluation_success"),
                min_value=0.9,
                thresholds=_objective(EVALUATION_SUCCESS_OBJECTIVE),
            ),
            stat(
                "API latency burn rate (1 h)",
                Query("max(tars:slo_burn_rate:api_latency:1h)"),
                thresholds=BURN_RATE,
                decimals=2,
                height=6,
            ),
            stat(
                "Error-rate burn rate (1 h)",
                Query("max(tars:slo_burn_rate:error_rate:1h)"),
                thresholds=BURN_RATE,
                decimals=2,
                height=6,
            ),
            stat(
                "Evaluation success burn rate (1 h)",
                Query("tars:slo_burn_rate:evaluation_success:1h"),
                thresholds=BURN_RATE,
                decimals=2,
                height=6,
            ),
            timeseries(
                "SLO compliance by service",
                Query("tars:slo_compliance:api_latency", "{{service}} within 150 ms"),
                Query("tars:slo_compliance:error_rate", "{{service}} not 5xx"),
                Query("tars:slo_compliance:evaluation_success", "evaluations completed"),
                unit="percentunit",
                max_value=1,
                thresholds=_objective(API_LATENCY_OBJECTIVE),
                width=12,
            ),
            timeseries(
                "API latency burn rate by window",
                *burn_rates("api_latency"),
                thresholds=BURN_RATE,
                min_value=0,
                width=12,
            ),
            timeseries(
                "Error-rate burn rate by window",
                *burn_rates("error_rate"),
                thresholds=BURN_RATE,
                min_value=0,
                width=12,
            ),
            timeseries(
                "Evaluation success burn rate by window",
                *burn_rates("evaluation_success"),
                thresholds=BURN_RATE,
                min_value=0,
                width=12,
            ),
            table(
                "Burn rates by service",
                Query("tars:slo_burn_rate:api_latency:1h"),
                Query("tars:slo_burn_rate:api_latency:6h"),
                Query("tars:slo_burn_rate:api_latency:1d"),
                Query("tars:slo_burn_rate:error_rate:1h"),
                Query("tars:slo_burn_rate:error_rate:6h"),
                Query("tars:slo_burn_rate:error_rate:1d"),
                columns=["latency 1h", "latency 6h", "latency 1d", "errors 1h", "errors 6h", "errors 1d"],
                width=24,
                height=6,
            ),
        ],
    )


def _traffic() -> Section:
    return Section(
        "API traffic",
        [
            timeseries(
                "Requests per second by service",
                Query("sum by (service) (tars:http_requests_by_code:rate1m)", "{{service}}"),
                unit="reqps",
                stacked=True,
            ),
            timeseries(
                "Requests per second by status code",
                Query("sum by (code) (tars:http_requests_by_code:rate1m)", "{{code}}"),
                unit="reqps",
                stacked=True,
            ),
            timeseries(
                "Requests per second by method",
                Query("sum by (method) (tars:http_requests_by_code:rate1m)", "{{method}}"),
                unit="reqps",
                stacked=True,
            ),
            timeseries(
                f"Busiest {TOP} routes",
                Query(f"topk({TOP}, tars:http_requests_by_route:rate5m)", "{{service}} {{method}} {{route}}"),
                unit="reqps",
                width=12,
            ),
            timeseries(
                "Requests per second by release",
                Query("sum by (version) (tars:http_requests_by_code:rate1m)", "{{version}}"),
                unit="reqps",
                stacked=True,
                width=6,
            ),
            timeseries(
                "Throttled share (429) by service",
                Query("tars:http_requests_throttled:ratio_rate5m", "{{service}}"),
                unit="percentunit",
                min_value=0,
                width=6,
            ),
            table(
                "Routes: traffic, errors, latency",
                Query("sum by (service, route) (tars:http_requests_by_route:rate5m)"),
                Query("max by (service, route) (tars:http_request_errors_by_route:ratio_rate5m)"),
                Query("max by (service, route) (tars:http_request_latency:p50:5m)"),
                Query("max by (service, route) (tars:http_request_latency:p95:5m)"),
                Query("max by (service, route) (tars:http_request_latency:p99:5m)"),
                columns=["req/s", "5xx ratio", "p50 (s)", "p95 (s)", "p99 (s)"],
                width=24,
                height=10,
            ),
        ],
    )


def _errors() -> Section:
    return Section(
        "API errors",
        [
            timeseries(
                "Server error ratio by service",
                Query("tars:http_request_errors:ratio_rate1m", "{{service}} 1m"),
                Query("tars:http_request_errors:ratio_rate5m", "{{service}} 5m"),
                unit="percentunit",
                min_value=0,
                thresholds=((None, "green"), (1 - ERROR_RATE_OBJECTIVE, "red")),
            ),
            timeseries(
                "Server errors per second by service",
                Query(
                    'sum by (service, code) (tars:http_requests_by_code:rate1m{code=~"5.."})',
                    "{{service}} {{code}}",
                ),
                unit="reqps",
                stacked=True,
            ),
            timeseries(
                "Client errors per second by code",
                Query('sum by (code) (tars:http_requests_by_code:rate1m{code=~"4.."})', "{{code}}"),
                description="401/403: credentials; 409: attempts racing; 422: refused input; 429: rate limits.",
                unit="reqps",
                stacked=True,
            ),
            timeseries(
                f"Routes with the highest server error ratio (top {TOP})",
                Query(
                    f"topk({TOP}, tars:http_request_errors_by_route:ratio_rate5m > 0)",
                    "{{service}} {{method}} {{route}}",
                ),
                unit="percentunit",
                width=12,
            ),
            timeseries(
                "Server error ratio by release",
                Query("tars:http_request_errors_by_version:ratio_rate5m", "{{service}} {{version}}"),
                unit="percentunit",
                min_value=0,
                width=12,
            ),
        ],
    )


def _latency() -> Section:
    return Section(
        "API latency",
        [
            timeseries(
                "Latency by service p50 / p95 / p99",
                Query("tars:http_request_latency_by_service:p50:5m", "{{service}} p50"),
                Query("tars:http_request_latency_by_service:p95:5m", "{{service}} p95"),
                Query("tars:http_request_latency_by_service:p99:5m", "{{service}} p99"),
                unit="s",
                thresholds=((None, "green"), (0.15, "red")),
                width=12,
            ),
            timeseries(
                "Latency by release p95 / p99",
                Query("tars:http_request_latency_by_version:p95:5m", "{{service}} {{version}} p95"),
                Query("tars:http_request_latency_by_version:p99:5m", "{{service}} {{version}} p99"),
                unit="s",
                width=12,
            ),
            timeseries(
                f"Slowest {TOP} routes p50",
                Query(f"topk({TOP}, tars:http_request_latency:p50:5m)", "{{service}} {{route}}"),
                unit="s",
            ),
            timeseries(
                f"Slowest {TOP} routes p95",
                Query(f"topk({TOP}, tars:http_request_latency:p95:5m)", "{{service}} {{route}}"),
                unit="s",
            ),
            timeseries(
                f"Slowest {TOP} routes p99",
                Query(f"topk({TOP}, tars:http_request_latency:p99:5m)", "{{service}} {{route}}"),
                unit="s",
            ),
            timeseries(
                "Live p95 by route (1 m window)",
                Query(f"topk({TOP}, tars:http_request_latency:p95:1m)", "{{service}} {{route}}"),
                description="The 1-minute window shows a spike within a few scrapes; the 5-minute one smooths it.",
                unit="s",
                width=12,
            ),
            timeseries(
                "Live p50 / p99 of the slowest route (1 m window)",
                Query("max(tars:http_request_latency:p50:1m)", "p50"),
                Query("max(tars:http_request_latency:p99:1m)", "p99"),
                unit="s",
                width=12,
            ),
        ],
    )


def _evaluations() -> Section:
    return Section(
        "Evaluations",
        [
            timeseries(
                "Evaluations per second by agent",
                Query("sum by (agent_id) (tars:evaluations:rate1m)", "{{agent_id}}"),
                unit="ops",
                stacked=True,
                width=6,
            ),
            timeseries(
                "Evaluations per second by region",
                Query("sum by (region) (tars:evaluations:rate1m)", "{{region}}"),
                unit="ops",
                stacked=True,
                width=6,
            ),
            timeseries(
                "Evaluations per second by environment",
                Query("sum by (environment) (tars:evaluations:rate1m)", "{{environment}}"),
                unit="ops",
                stacked=True,
                width=6,
            ),
            timeseries(
                "Evaluations per second by status",
                Query("sum by (status) (tars:evaluations:rate5m)", "{{status}}"),
                unit="ops",
                stacked=True,
                width=6,
            ),
            timeseries(
                "Evaluation success by agent",
                Query("tars:evaluation_success:ratio_rate5m", "{{agent_id}}"),
                unit="percentunit",
                max_value=1,
                thresholds=_objective(EVALUATION_SUCCESS_OBJECTIVE),
            ),
            timeseries(
                "Evaluation success by region",
                Query("tars:evaluation_success_by_region:ratio_rate5m", "{{region}}"),
                description="A region failing alone points at its infrastructure, not at the agents.",
                unit="percentunit",
                max_value=1,
                thresholds=_objective(EVALUATION_SUCCESS_OBJECTIVE),
            ),
            timeseries(
                "Evaluation success by release",
                Query("tars:evaluation_success_by_version:ratio_rate5m", "{{version}}"),
                unit="percentunit",
                max_value=1,
                thresholds=_objective(EVALUATION_SUCCESS_OBJECTIVE),
            ),
            timeseries(
                "Evaluation latency p95 by agent",
                Query("max by (agent_id) (tars:evaluation_latency:p95:5m)", "{{agent_id}}"),
                description="The slowest environment and region of each agent.",
                unit="s",
            ),
            timeseries(
                "Evaluation latency p95 by region",
                Query("max by (region) (tars:evaluation_latency:p95:5m)", "{{region}}"),
                unit="s",
            ),
            timeseries(
                "Evaluation latency p50 / p95 / p99 (slowest agent)",
                Query("max(tars:evaluation_latency:p50:5m)", "p50"),
                Query("max(tars:evaluation_latency:p95:5m)", "p95"),
                Query("max(tars:evaluation_latency:p99:5m)", "p99"),
                unit="s",
            ),
            timeseries(
                "Live evaluation latency p95 by agent (1 m window)",
                Query("max by (agent_id) (tars:evaluation_latency:p95:1m)", "{{agent_id}} p95"),
                Query("max by (agent_id) (tars:evaluation_latency:p99:1m)", "{{agent_id}} p99"),
                Query("max by (agent_id) (tars:evaluation_latency:p50:1m)", "{{agent_id}} p50"),
                unit="s",
                width=12,
            ),
            timeseries(
                "Evaluation latency p95 by release",
                Query("tars:evaluation_latency_by_version:p95:5m", "{{version}}"),
                unit="s",
                width=12,
            ),
            table(
                "Evaluations by agent and region",
                Query("sum by (agent_id, region) (tars:evaluations:rate5m)"),
                Query('sum by (agent_id, region) (tars:evaluations:rate5m{status="failed"})'),
                Query("max by (agent_id, region) (tars:evaluation_latency:p50:5m)"),
                Query("max by (agent_id, region) (tars:evaluation_latency:p95:5m)"),
                columns=["evaluations/s", "failed/s", "p50 (s)", "p95 (s)"],
                width=24,
                height=10,
            ),
        ],
    )


def _rewards() -> Section:
    return Section(
        "Rewards",
        [
            timeseries(
                "Evaluation reward median by agent and environment",
                Query("tars:evaluation_reward:p50:5m", "{{agent_id}} {{environment}}"),
                width=12,
            ),
            timeseries(
                "Evaluation reward p05 / p95 by agent and environment",
                Query("tars:evaluation_reward:p05:5m", "{{agent_id}} {{environment}} p05"),
                Query("tars:evaluation_reward:p95:5m", "{{agent_id}} {{environment}} p95"),
                description="The band around the median: a widening band is a policy that became erratic.",
                width=12,
            ),
            timeseries(
                "Training episode reward median by agent",
                Query("tars:training_episode_reward:p50:5m", "{{agent_id}}"),
                description="The learning curve.",
                width=12,
            ),
            timeseries(
                "Training episode reward p05 / p95 by agent",
                Query("tars:training_episode_reward:p05:5m", "{{agent_id}} p05"),
                Query("tars:training_episode_reward:p95:5m", "{{agent_id}} p95"),
                width=12,
            ),
            table(
                "Evaluation reward by agent and environment",
                Query("tars:evaluation_reward:p05:5m"),
                Query("tars:evaluation_reward:p50:5m"),
                Query("tars:evaluation_reward:p95:5m"),
                columns=["p05", "p50", "p95"],
                width=12,
            ),
            table(
                "Training episode reward by agent",
                Query("tars:training_episode_reward:p05:5m"),
                Query("tars:training_episode_reward:p50:5m"),
                Query("tars:training_episode_reward:p95:5m"),
                columns=["p05", "p50", "p95"],
                width=12,
            ),
        ],
    )


def _training() -> Section:
    return Section(
        "Training",
        [
            timeseries(
                "Environment steps trained per second by agent",
                Query("tars:training_steps:rate1m", "{{agent_id}}"),
                stacked=True,
            ),
            timeseries(
                "Training episodes per second by agent",
                Query("tars:training_episodes:rate5m", "{{agent_id}}"),
                stacked=True,
            ),
            timeseries(
                "Training run success by agent (1 h)",
                Query("tars:training_run_success:ratio_rate1h", "{{agent_id}}"),
                description="Succeeded over succeeded and failed; cancelled runs are an operator's choice.",
                unit="percentunit",
                max_value=1,
            ),
            timeseries(
                "Training runs finished in the last hour by status",
                Query("sum by (status) (tars:training_runs:increase1h)", "{{status}}"),
                stacked=True,
                width=12,
            ),
            stat(
                "Training runs succeeded (last hour)",
                Query('sum(tars:training_runs:increase1h{status="succeeded"})'),
                decimals=0,
                width=6,
                height=8,
            ),
            stat(
                "Training runs failed (last hour)",
                Query('sum(tars:training_runs:increase1h{status="failed"})'),
                thresholds=((None, "green"), (1, "orange"), (5, "red")),
                decimals=0,
                width=6,
                height=8,
            ),
        ],
    )


def _queue_and_workers() -> Section:
    return Section(
        "Job queue and workers",
        [
            timeseries(
                "Jobs waiting by agent family",
                Query("tars:queue_depth:max", "{{algorithm}}"),
                stacked=True,
            ),
            timeseries(
                "Jobs delivered, not yet acknowledged",
                Query("tars:queue_pending:max", "{{algorithm}}"),
                stacked=True,
            ),
            timeseries(
                "Queue lag (oldest job waiting)",
                Query("tars:queue_oldest_age_seconds:max", "{{algorithm}}"),
                description="Depth cannot tell a busy queue that moves from a stuck one; the oldest job's age can.",
                unit="s",
            ),
            timeseries(
                "Workers by agent family",
                Query("tars:workers:count", "{{algorithms}}"),
                stacked=True,
                width=6,
            ),
            timeseries(
                "Busy slots by agent family",
                Query("tars:worker_busy_slots:sum", "{{algorithms}}"),
                stacked=True,
                width=6,
            ),
            timeseries(
                "Jobs done in the last hour",
                Query("tars:worker_jobs_done:increase1h", "{{algorithms}}"),
                stacked=True,
                width=6,
            ),
            timeseries(
                "Worker heartbeat age",
                # The age when the rule last ran (its time() is the evaluation's), so up to an
                # evaluation interval (15 s) low: enough against the alert's 60 s. This page reads
                # rules only; time() minus the raw heartbeat gauge would be exact.
                Query("tars:worker_heartbeat_age:seconds", "{{worker}}"),
                unit="s",
                # The heartbeat alert fires past a minute.
                thresholds=((None, "green"), (60, "red")),
                width=6,
            ),
            timeseries(
                "Worker memory by agent family",
                Query("tars:worker_rss_bytes:sum", "{{algorithms}} total"),
                Query("tars:worker_rss_bytes:max", "{{algorithms}} largest worker"),
                unit="bytes",
            ),
            timeseries(
                "Worker memory growth (30 m trend)",
                Query("tars:worker_rss_bytes:deriv30m", "{{worker}}"),
                description="Steady above zero is a leak; a large but flat worker is a large job.",
                unit="Bps",
            ),
            table(
                "Workers",
                Query("tars:worker_heartbeat_age:seconds"),  # as of the rule's last run: see above
                Query("tars:worker_rss_bytes:deriv30m"),
                columns=["heartbeat age (s)", "memory growth (B/s)"],
                width=8,
            ),
        ],
    )


def _websocket() -> Section:
    return Section(
        "Live feed (WebSocket)",
        [
            timeseries("WebSocket connections open", Query("tars:ws_connections:sum", "open"), width=6),
            timeseries(
                "WebSocket connections opened and resumed",
                Query("tars:ws_connections_opened:rate5m", "opened"),
                Query("tars:ws_resumed_subscriptions:rate5m", "subscriptions resumed"),
                description="Many opens against a flat connection count: clients keep reconnecting.",
                unit="ops",
                width=6,
            ),
            timeseries(
                "WebSocket events sent per second",
                Query("tars:ws_events_sent:rate1m", "sent"),
                unit="ops",
                width=6,
            ),
            timeseries(
                "WebSocket events replayed share",
                Query("tars:ws_events_replayed:ratio_rate5m", "replayed"),
                unit="percentunit",
                min_value=0,
                width=6,
            ),
            timeseries(
                "WebSocket clients that lost events",
                Query("tars:ws_resets:rate5m", "told to reload"),
                Query("tars:ws_slow_consumers_dropped:rate5m", "dropped as too slow"),
                description="Either one lasting means TARS_CLEAR_FREQUENCY or client bandwidth is too small.",
                unit="ops",
                width=24,
            ),
        ],
    )


def _database() -> Section:
    return Section(
        "Database",
        [
            timeseries(
                "Pool connections by state (all processes)",
                Query("tars:db_pool_connections:sum", "{{state}}"),
                description="What PostgreSQL sees from the whole fleet, to hold against its max_connections.",
                stacked=True,
            ),
            timeseries(
                "Pool utilisation by process",
                Query("tars:db_pool_utilisation:ratio", "{{job}} {{instance}}"),
                unit="percentunit",
                max_value=1,
                thresholds=((None, "green"), (0.9, "red")),
            ),
            timeseries(
                "Statements per second by operation",
                Query("tars:db_queries:rate1m", "{{operation}}"),
                unit="ops",
                stacked=True,
            ),
            timeseries("Query p50 by operation", Query("tars:db_query_latency:p50:5m", "{{operation}}"), unit="s"),
            timeseries(
                "Query p95 by operation",
                Query("tars:db_query_latency:p95:5m", "{{operation}} 5m"),
                Query("tars:db_query_latency:p95:1m", "{{operation}} 1m"),
                unit="s",
            ),
            timeseries("Query p99 by operation", Query("tars:db_query_latency:p99:5m", "{{operation}}"), unit="s"),
        ],
    )


def _tracing() -> Section:
    return Section(
        "Tracing",
        [
            timeseries(
                "Trace continuity by transport",
                Query("tars:trace_continuity:ratio_rate5m", "{{transport}}"),
                description="Share of consumed messages that carried their producer's trace context.",
                unit="percentunit",
                max_value=1,
                thresholds=_objective(0.99),
                width=12,
            ),
            timeseries(
                "Messages consumed per second by transport",
                Query("tars:trace_messages:rate5m", "{{transport}} continued={{continued}}"),
                unit="ops",
                stacked=True,
                width=12,
            ),
        ],
    )


def build() -> models.Dashboard:
    return dashboard(
        UID,
        "T.A.R.S. / Overview",
        description="Every T.A.R.S. service at a glance, from the tars:* recording rules.",
        variables=[],
        sections=[
            _health(),
            _insights(),
            _slo(),
            _traffic(),
            _errors(),
            _latency(),
            _evaluations(),
            _rewards(),
            _training(),
            _queue_and_workers(),
            _websocket(),
            _database(),
            _tracing(),
        ],
    )
