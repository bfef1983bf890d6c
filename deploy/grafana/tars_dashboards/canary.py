"""tars-canary: a canary release against the stable one, told apart by the `version` label.

Every panel draws both releases (or compares them in one expression), so a regression reads as two
curves drifting apart rather than as a number to remember from another panel.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.models import dashboard as models

from .panels import BAD_HIGH, GOOD_HIGH, Query, Section, dashboard, label_values_variable, stat, table, timeseries

UID = "tars-canary"

STABLE = 'version="$stable"'
CANARY = 'version="$canary"'
RELEASES = (("stable", STABLE), ("canary", CANARY))

SERVER_ERRORS = 'code=~"5.."'
COMPLETED = 'status="completed"'
FAILED = 'status="failed"'


def _both(expr: Callable[[str], str], legend: str = "") -> list[Query]:
    """The same expression once per release; `expr` gets the release's version matcher."""
    return [Query(expr(matcher), f"{name} {legend}".strip()) for name, matcher in RELEASES]


def _sum_rate(metric: str, *matchers: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{', '.join(matchers)}}}[$__rate_interval]))"


def _request_rate(version: str) -> str:
    return _sum_rate("http_requests_total", version)


def _error_ratio(version: str) -> str:
    return f"{_sum_rate('http_requests_total', version, SERVER_ERRORS)} / {_sum_rate('http_requests_total', version)}"


def _p95(version: str) -> str:
    return f"histogram_quantile(0.95, {_sum_rate('http_request_duration_seconds_bucket', version, by='le')})"


def _p50(version: str) -> str:
    return f"histogram_quantile(0.5, {_sum_rate('http_request_duration_seconds_bucket', version, by='le')})"


def _evaluation_success(version: str) -> str:
    completed = _sum_rate("tars_evaluations_total", version, COMPLETED)
    return f"{completed} / {_sum_rate('tars_evaluations_total', version)}"


def _evaluation_success_by_agent(version: str) -> str:
    completed = _sum_rate("tars_evaluations_total", version, COMPLETED, by="agent_id")
    return f"{completed} / {_sum_rate('tars_evaluations_total', version, by='agent_id')}"


def _evaluation_p95(version: str) -> str:
    return f"histogram_quantile(0.95, {_sum_rate('tars_evaluation_duration_seconds_bucket', version, by='le')})"


def _training_failed_ratio(version: str) -> str:
    failed = _sum_rate("tars_training_runs_total", version, FAILED)
    return f"{failed} / {_sum_rate('tars_training_runs_total', version)}"


def _at_a_glance() -> Section:
    return Section(
        "At a glance",
        [
            stat("Request rate now", *_both(_request_rate), unit="reqps", width=6),
            stat("Server error ratio now", *_both(_error_ratio), unit="percentunit", thresholds=BAD_HIGH, width=6),
            stat("p95 latency now", *_both(_p95), unit="s", thresholds=((None, "green"), (0.5, "orange")), width=6),
            stat(
                "Evaluation success now",
                *_both(_evaluation_success),
                unit="percentunit",
                thresholds=GOOD_HIGH,
                width=6,
            ),
            stat(
                "Canary share of requests",
                Query(f"{_request_rate(CANARY)} / ({_request_rate(CANARY)} + {_request_rate(STABLE)})", "canary share"),
                unit="percentunit",
                width=6,
            ),
            stat(
                "Canary / stable p95 latency",
                Query(f"{_p95(CANARY)} / {_p95(STABLE)}", "canary / stable"),
                description="Above 1 the canary answers slower than the stable release.",
                unit="none",
                thresholds=((None, "green"), (1.2, "orange"), (1.5, "red")),
                decimals=2,
                width=6,
            ),
            stat(
                "Server error ratio, canary minus stable",
                Query(f"({_error_ratio(CANARY)}) - ({_error_ratio(STABLE)})", "canary - stable"),
                unit="percentunit",
                thresholds=((None, "green"), (0.001, "orange"), (0.01, "red")),
                width=6,
            ),
            stat(
                "Evaluation success, canary minus stable",
                Query(f"({_evaluation_success(CANARY)}) - ({_evaluation_success(STABLE)})", "canary - stable"),
                unit="percentunit",
                thresholds=((None, "red"), (-0.01, "orange"), (0, "green")),
                width=6,
            ),
        ],
    )


def _http() -> Section:
    return Section(
        "HTTP",
        [
            timeseries("Request rate", *_both(_request_rate), unit="reqps", width=12),
            timeseries("Server error ratio", *_both(_error_ratio), unit="percentunit", min_value=0, width=12),
            timeseries("p95 latency", *_both(_p95), unit="s", width=12),
            timeseries(
                "p50 latency",
                *_both(_p50),
                unit="s",
                width=12,
            ),
            timeseries(
                "Request rate by service",
                *_both(lambda v: _sum_rate("http_requests_total", v, by="service"), "{{service}}"),
                unit="reqps",
                width=12,
            ),
            timeseries(
                "Responses by status code",
                *_both(lambda v: _sum_rate("http_requests_total", v, by="code"), "{{code}}"),
                unit="reqps",
                width=12,
            ),
            table(
                "p95 latency by route",
                *(
                    Query(
                        "histogram_quantile(0.95, "
                        f"{_sum_rate('http_request_duration_seconds_bucket', matcher, by='le, service, route')})"
                    )
                    for _, matcher in RELEASES
                ),
                columns=["stable p95", "canary p95"],
                unit="s",
                width=12,
                height=10,
            ),
            table(
                "Server error ratio by route",
                *(
                    Query(
                        f"{_sum_rate('http_requests_total', matcher, SERVER_ERRORS, by='service, route')}"
                        f" / {_sum_rate('http_requests_total', matcher, by='service, route')}"
                    )
                    for _, matcher in RELEASES
                ),
                columns=["stable errors", "canary errors"],
                unit="percentunit",
                width=12,
                height=10,
            ),
        ],
    )


def _evaluations() -> Section:
    return Section(
        "Evaluations and training",
        [
            timeseries(
                "Evaluation success ratio",
                *_both(_evaluation_success),
                unit="percentunit",
                min_value=0,
                max_value=1,
                width=12,
            ),
            timeseries(
                "Evaluations per second",
                *_both(lambda v: _sum_rate("tars_evaluations_total", v)),
                unit="ops",
                width=12,
            ),
            timeseries(
                "Evaluation success ratio by agent",
                *_both(_evaluation_success_by_agent, "{{agent_id}}"),
                unit="percentunit",
                width=12,
            ),
            timeseries(
                "Evaluation duration p95",
                *_both(_evaluation_p95),
                unit="s",
                width=12,
            ),
            timeseries(
                "Training runs failed ratio",
                *_both(_training_failed_ratio),
                unit="percentunit",
                min_value=0,
                width=12,
            ),
            timeseries(
                "Training steps per second",
                *_both(lambda v: _sum_rate("tars_training_steps_total", v)),
                width=12,
            ),
        ],
    )


def build() -> models.Dashboard:
    return dashboard(
        UID,
        "T.A.R.S. / Canary",
        description="A canary release against the stable one: traffic, errors, latency and evaluation success.",
        variables=[
            # Opposite sort orders so that, untouched, the two pick different releases: the oldest as
            # stable and the newest as canary.
            label_values_variable(
                "stable",
                "label_values(http_requests_total, version)",
                label="Stable",
                sort=models.VariableSort.ALPHABETICAL_ASC,
            ),
            label_values_variable(
                "canary",
                "label_values(http_requests_total, version)",
                label="Canary",
                sort=models.VariableSort.ALPHABETICAL_DESC,
            ),
        ],
        sections=[_at_a_glance(), _http(), _evaluations()],
    )
