"""tars-agents: one agent (or several) at a time — how it evaluates and how its training goes."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as models

from .panels import (
    GOOD_HIGH,
    Query,
    Section,
    dashboard,
    gauge,
    label_values_variable,
    stat,
    table,
    timeseries,
)

UID = "tars-agents"

EVALS = 'agent_id=~"$agent_id", environment=~"$environment"'
TRAINING = 'agent_id=~"$agent_id"'


def _rate(metric: str, selector: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}[$__rate_interval]))"


def _quantile(q: float, histogram: str, selector: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({histogram}_bucket{{{selector}}}[$__rate_interval])))"


def _evaluations() -> Section:
    success = (
        f'sum by (agent_id) (rate(tars_evaluations_total{{{EVALS}, status="completed"}}[$__rate_interval]))'
        f" / sum by (agent_id) (rate(tars_evaluations_total{{{EVALS}}}[$__rate_interval]))"
    )
    return Section(
        "Evaluations",
        [
            stat(
                "Evaluations in range",
                Query(f"sum(increase(tars_evaluations_total{{{EVALS}}}[$__range]))"),
                width=6,
                decimals=0,
            ),
            stat(
                "Failed evaluations in range",
                Query(f'sum(increase(tars_evaluations_total{{{EVALS}, status="failed"}}[$__range]))'),
                width=6,
                decimals=0,
                thresholds=((None, "green"), (1, "orange")),
            ),
            gauge(
                "Evaluation success in range",
                Query(
                    f'sum(increase(tars_evaluations_total{{{EVALS}, status="completed"}}[$__range]))'
                    f" / sum(increase(tars_evaluations_total{{{EVALS}}}[$__range]))"
                ),
                width=6,
                height=4,
            ),
            stat(
                "Agents selected with evaluations",
                Query(f"count(count by (agent_id) (tars_evaluations_total{{{EVALS}}}))"),
                width=6,
                decimals=0,
            ),
            timeseries(
                "Evaluations per second by agent and status",
                Query(_rate("tars_evaluations_total", EVALS, "agent_id, status"), "{{agent_id}} {{status}}"),
                unit="ops",
                stacked=True,
                width=8,
            ),
            timeseries(
                "Evaluations per second by region",
                Query(_rate("tars_evaluations_total", EVALS, "agent_id, region"), "{{agent_id}} {{region}}"),
                unit="ops",
                stacked=True,
                width=8,
            ),
            timeseries(
                "Evaluation success ratio by agent",
                Query(success, "{{agent_id}}"),
                unit="percentunit",
                min_value=0,
                max_value=1,
                width=8,
            ),
        ],
    )


def _rewards() -> Section:
    hist = "tars_evaluation_reward"
    return Section(
        "Reward distribution",
        [
            timeseries(
                "Evaluation reward p10 / p50 / p90",
                # No _sum for rewards (negative bounds), so the distribution is read from buckets only.
                Query(_quantile(0.1, hist, EVALS, "agent_id"), "{{agent_id}} p10"),
                Query(_quantile(0.5, hist, EVALS, "agent_id"), "{{agent_id}} p50"),
                Query(_quantile(0.9, hist, EVALS, "agent_id"), "{{agent_id}} p90"),
                description="Quantiles interpolated inside the reward histogram's buckets (-1000 … 500).",
                width=12,
            ),
            timeseries(
                "Evaluation reward median by environment",
                Query(_quantile(0.5, hist, EVALS, "agent_id, environment"), "{{agent_id}} {{environment}}"),
                width=12,
            ),
            table(
                "Reward quantiles over the range by agent and environment",
                *(
                    Query(
                        f"histogram_quantile({q}, sum by (le, agent_id, environment) "
                        f"(increase({hist}_bucket{{{EVALS}}}[$__range])))"
                    )
                    for q in (0.1, 0.5, 0.9)
                ),
                Query(f"sum by (agent_id, environment) (increase({hist}_count{{{EVALS}}}[$__range]))"),
                columns=["p10", "p50", "p90", "evaluations"],
                width=24,
            ),
        ],
    )


def _durations() -> Section:
    hist = "tars_evaluation_duration_seconds"
    return Section(
        "Evaluation duration",
        [
            timeseries(
                "Evaluation duration p50 / p95",
                Query(_quantile(0.5, hist, EVALS, "agent_id"), "{{agent_id}} p50"),
                Query(_quantile(0.95, hist, EVALS, "agent_id"), "{{agent_id}} p95"),
                unit="s",
                width=12,
            ),
            timeseries(
                "Evaluation duration p95 by region",
                Query(_quantile(0.95, hist, EVALS, "agent_id, region"), "{{agent_id}} {{region}}"),
                unit="s",
                width=12,
            ),
        ],
    )


def _training() -> Section:
    return Section(
        "Training",
        [
            timeseries(
                "Training steps per second (reported)",
                Query(f"sum by (agent_id) (tars_training_steps_per_second{{{TRAINING}}})", "{{agent_id}}"),
                unit="short",
                width=8,
            ),
            timeseries(
                "Environment steps trained per second",
                Query(_rate("tars_training_steps_total", TRAINING, "agent_id"), "{{agent_id}}"),
                unit="short",
                width=8,
            ),
            timeseries(
                "Training episodes per second",
                Query(_rate("tars_training_episodes_total", TRAINING, "agent_id"), "{{agent_id}}"),
                unit="short",
                width=8,
            ),
            timeseries(
                "Training loss by kind",
                Query(f"max by (agent_id, kind) (tars_training_loss{{{TRAINING}}})", "{{agent_id}} {{kind}}"),
                width=12,
            ),
            timeseries(
                "Training episode reward p50 / p90",
                Query(_quantile(0.5, "tars_training_episode_reward", TRAINING, "agent_id"), "{{agent_id}} p50"),
                Query(_quantile(0.9, "tars_training_episode_reward", TRAINING, "agent_id"), "{{agent_id}} p90"),
                width=12,
            ),
            timeseries(
                "Training runs finished by status",
                Query(
                    f"sum by (agent_id, status) (increase(tars_training_runs_total{{{TRAINING}}}[$__rate_interval]))",
                    "{{agent_id}} {{status}}",
                ),
                stacked=True,
                width=12,
            ),
            gauge(
                "Training runs succeeded in range",
                Query(
                    f'sum(increase(tars_training_runs_total{{{TRAINING}, status="succeeded"}}[$__range]))'
                    f" / sum(increase(tars_training_runs_total{{{TRAINING}}}[$__range]))"
                ),
                thresholds=GOOD_HIGH,
                width=6,
                height=8,
            ),
            stat(
                "Training episodes in range",
                Query(f"sum(increase(tars_training_episodes_total{{{TRAINING}}}[$__range]))"),
                width=6,
                height=8,
                decimals=0,
            ),
        ],
    )


def build() -> models.Dashboard:
    return dashboard(
        UID,
        "T.A.R.S. / Agents",
        description="Per agent: evaluations, reward distribution, evaluation duration and training progress.",
        variables=[
            label_values_variable(
                "agent_id", "label_values(tars_evaluations_total, agent_id)", label="Agent", include_all=True
            ),
            label_values_variable(
                "environment",
                'label_values(tars_evaluations_total{agent_id=~"$agent_id"}, environment)',
                label="Environment",
                include_all=True,
            ),
        ],
        sections=[_evaluations(), _rewards(), _durations(), _training()],
    )
