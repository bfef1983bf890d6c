"""tars-database: the connection pools and statement times of every process with a database client."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as models

from .panels import Query, Section, dashboard, gauge, label_values_variable, stat, table, timeseries

UID = "tars-database"

INSTANCE = 'instance=~"$instance"'
QUERIES = "tars_db_query_duration_seconds"


def _quantile(q: float) -> str:
    return f"histogram_quantile({q}, sum by (le, operation) (rate({QUERIES}_bucket{{{INSTANCE}}}[$__rate_interval])))"


def _pool() -> Section:
    utilisation = (
        f'sum(tars_db_pool_connections{{{INSTANCE}, state="checked_out"}}) / sum(tars_db_pool_capacity{{{INSTANCE}}})'
    )
    return Section(
        "Connection pool",
        [
            gauge(
                "Pool utilisation",
                Query(utilisation),
                description="Connections checked out over what the pools may hold, all selected processes together.",
                # Near full, requests start waiting for a connection and then answer 503.
                thresholds=((None, "green"), (0.7, "orange"), (0.9, "red")),
                width=6,
                height=8,
            ),
            timeseries(
                "Pool connections by state vs capacity",
                Query(f"sum by (state) (tars_db_pool_connections{{{INSTANCE}}})", "{{state}}"),
                Query(f"sum(tars_db_pool_capacity{{{INSTANCE}}})", "capacity"),
                stacked=True,
                lines=["capacity"],
                min_value=0,
                width=18,
            ),
            timeseries(
                "Checked-out connections by instance",
                Query(
                    f'sum by (instance) (tars_db_pool_connections{{{INSTANCE}, state="checked_out"}})'
                    f" / sum by (instance) (tars_db_pool_capacity{{{INSTANCE}}})",
                    "{{instance}}",
                ),
                unit="percentunit",
                min_value=0,
                max_value=1,
                width=12,
            ),
            table(
                "Pools by instance",
                Query(f'sum by (instance) (tars_db_pool_connections{{{INSTANCE}, state="checked_out"}})'),
                Query(f'sum by (instance) (tars_db_pool_connections{{{INSTANCE}, state="idle"}})'),
                Query(f"sum by (instance) (tars_db_pool_capacity{{{INSTANCE}}})"),
                columns=["checked out", "idle", "capacity"],
                width=12,
            ),
        ],
    )


def _statements() -> Section:
    return Section(
        "Statements",
        [
            timeseries(
                "Query duration p50 by operation",
                Query(_quantile(0.5), "{{operation}}"),
                unit="s",
                width=8,
            ),
            timeseries(
                "Query duration p95 by operation",
                Query(_quantile(0.95), "{{operation}}"),
                unit="s",
                width=8,
            ),
            timeseries(
                "Query duration p99 by operation",
                Query(_quantile(0.99), "{{operation}}"),
                unit="s",
                width=8,
            ),
            timeseries(
                "Statements per second by operation",
                Query(
                    f"sum by (operation) (rate({QUERIES}_count{{{INSTANCE}}}[$__rate_interval]))",
                    "{{operation}}",
                ),
                unit="ops",
                stacked=True,
                width=12,
            ),
            timeseries(
                "Mean query duration by operation",
                Query(
                    f"sum by (operation) (rate({QUERIES}_sum{{{INSTANCE}}}[$__rate_interval]))"
                    f" / sum by (operation) (rate({QUERIES}_count{{{INSTANCE}}}[$__rate_interval]))",
                    "{{operation}}",
                ),
                unit="s",
                width=12,
            ),
            stat(
                "Statements in range",
                Query(f"sum(increase({QUERIES}_count{{{INSTANCE}}}[$__range]))"),
                width=6,
                decimals=0,
            ),
            stat(
                "Worst p99 across operations",
                Query(f"max({_quantile(0.99)})"),
                # Statements are cancelled at TARS_DB_STATEMENT_TIMEOUT_MS (5 s): a p99 nearing it comes first.
                unit="s",
                thresholds=((None, "green"), (1, "orange"), (4, "red")),
                width=6,
            ),
            stat(
                "Statements per second",
                Query(f"sum(rate({QUERIES}_count{{{INSTANCE}}}[$__rate_interval]))"),
                unit="ops",
                width=6,
            ),
            stat(
                "Statement time per second",
                Query(f"sum(rate({QUERIES}_sum{{{INSTANCE}}}[$__rate_interval]))"),
                description="Seconds of statement time spent per second: how many connections are busy on average.",
                unit="s",
                width=6,
            ),
        ],
    )


def _ingest() -> Section:
    return Section(
        "Evaluations ingest",
        [
            timeseries(
                "Evaluations stored per second by status",
                Query(
                    "sum by (status) (rate(tars_evaluations_total[$__rate_interval]))",
                    "{{status}}",
                ),
                unit="ops",
                stacked=True,
                width=12,
            ),
            timeseries(
                "Inserts and COPYs per second vs evaluations stored",
                Query(
                    f'sum by (operation) (rate({QUERIES}_count{{{INSTANCE}, operation=~"insert|copy"}}'
                    "[$__rate_interval]))",
                    "{{operation}} statements",
                ),
                Query("sum(rate(tars_evaluations_total[$__rate_interval]))", "evaluations"),
                description="Batches go in by COPY: many evaluations per statement is what keeps ingest cheap.",
                unit="ops",
                width=12,
            ),
        ],
    )


def build() -> models.Dashboard:
    return dashboard(
        UID,
        "T.A.R.S. / Database",
        description="Connection pools against their capacity, statement times by operation, evaluations ingest.",
        variables=[
            label_values_variable(
                "instance", "label_values(tars_db_pool_capacity, instance)", label="Instance", include_all=True
            ),
        ],
        sections=[_pool(), _statements(), _ingest()],
    )
