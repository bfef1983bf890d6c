"""Every metric docs/metrics.md lists is exported by a running stack once it has done some work, so
recording rules, alerts and dashboards (checked against the catalogue in tests/deploy) never query
a metric nothing exports."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Processes, Stack
from tests.e2e.test_end_to_end import TRAIN, LiveFeed, wait_run

CATALOGUE = Path(__file__).parents[2] / "docs" / "metrics.md"


def catalogue() -> dict[str, str]:
    """Metric name → type, from the first two columns of the catalogue's tables."""
    rows = re.findall(r"^\| `([a-z_:]+)` \| (counter|gauge|histogram) \|", CATALOGUE.read_text(), re.MULTILINE)
    return dict(rows)


def sampled(text: str) -> set[str]:
    return {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_the_catalogue_lists_every_metric_the_code_defines() -> None:
    from prometheus_client import REGISTRY

    import tars.metrics.collectors
    import tars.metrics.counting

    assert tars.metrics.collectors is not None and tars.metrics.counting is not None  # all registered now
    defined = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in REGISTRY.collect()
        if family.name.startswith(("tars_", "http_"))
    }
    assert defined - set(catalogue()) == set(), "defined but not in docs/metrics.md"


@pytest.mark.slow
def test_a_working_stack_exports_every_metric_in_the_catalogue(
    distributed_stack: Callable[..., Stack], processes: Processes
) -> None:
    stack = distributed_stack(workers=1, TARS_LOG_FORMAT="json")
    stack.create_user("mia", "operator")
    operator = stack.token("mia")
    feed = LiveFeed(stack, operator)
    try:
        # Learning from the first step, so a loss is logged within the run's few episodes.
        agent = {"agent_id": "dqn-eager", "algorithm": "dqn", "environment": "CartPole-v1"}
        agent["hyperparameters"] = {"learning_starts": 0, "train_freq": 4, "gradient_steps": 1}
        created = httpx.post(f"{stack.orchestration_url}/api/v1/agents", json=agent, headers=operator)
        assert created.status_code == 201, created.text
        train = {**TRAIN, "agent_id": "dqn-eager"}
        run_id = httpx.post(f"{stack.orchestration_url}/api/v1/train", json=train, headers=operator).json()["run_id"]
        finished = wait_run(stack, operator, run_id)
        assert finished["status"] == "succeeded" and "loss" in finished["metrics"], finished
        item = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": 120.0, "duration_ms": 40.0}
        url = f"{stack.dashboard_url}/api/v1/evaluations"
        assert httpx.post(url, json=item, headers=operator).status_code == 201
        assert httpx.post(f"{url}/batch", json={"items": [item] * 60}, headers=operator).status_code == 201
        scraped = set()
        urls = (stack.dashboard_url, stack.orchestration_url, stack.insight_url)
        for target in (url + "/metrics" for url in urls):
            scraped |= sampled(httpx.get(target, timeout=10).text)
        for target in stack.worker_metrics_urls.values():
            scraped |= sampled(httpx.get(target, timeout=10).text)
    finally:
        feed.close()
    # Logs are JSON lines; what the worker logged while on the job carries the job's trace.
    lines = [json.loads(line) for line in processes.log("worker-0").splitlines() if line.startswith("{")]
    on_the_job = [line for line in lines if run_id in line["message"]]
    assert on_the_job and all(len(line.get("trace_id", "")) == 32 for line in on_the_job), on_the_job
    missing = []
    for name, kind in catalogue().items():
        wanted = f"{name}_bucket" if kind == "histogram" else name
        if wanted not in scraped:
            missing.append(name)
    assert missing == [], "listed in docs/metrics.md but no sample on any process"
