"""A real Prometheus (Debian's package) scrapes a running distributed stack with the recording rules
and alerts of deploy/prometheus, while the stack trains and takes evaluations: the rules get data,
and none of them fails to evaluate."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import Processes, Stack
from tests.e2e.test_end_to_end import TRAIN, wait_run
from tests.waiting import eventually

RULES = Path(__file__).parents[2] / "deploy" / "prometheus" / "rules"


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    assert found, "Prometheus is not installed: apt-get install -y prometheus (.ci/run does)"
    return found


def start_prometheus(stack: Stack, processes: Processes, folder: Path) -> str:
    """Prometheus on a free port, scraping the stack every second and evaluating rules as often."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in sorted(RULES.glob("*.yml"))],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [url.split("//", 1)[1].split("/", 1)[0]]}]}
            for job, url in (
                ("tars-dashboard-api", stack.dashboard_url),
                ("tars-orchestration", stack.orchestration_url),
                *(("tars-worker", url) for url in stack.worker_metrics_urls.values()),
            )
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    command = [prometheus_binary(), f"--config.file={folder / 'prometheus.yml'}"]
    command += [f"--storage.tsdb.path={folder / 'data'}", "--web.listen-address=127.0.0.1:0"]
    process = processes.run("prometheus", command)

    def running() -> bool:
        assert process.poll() is None, processes.log("prometheus")[-3000:]
        return True

    def listening() -> str | None:  # Prometheus logs the port it bound: msg="Listening on" address=127.0.0.1:N
        found = re.search(r'msg="Listening on" address=(\S+)', processes.log("prometheus"))
        return f"http://{found[1]}" if running() and found else None

    url = eventually(listening, 60, interval=0.05, message="Prometheus to listen")

    def ready() -> bool:
        try:
            return running() and httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(ready, 60, interval=0.1, message=lambda: "Prometheus ready: " + processes.log("prometheus")[-3000:])
    return url


def query(prometheus: str, expression: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=10).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def wait_for_data(prometheus: str, expression: str, timeout: float = 90) -> list[dict[str, Any]]:
    return eventually(lambda: query(prometheus, expression), timeout, interval=0.5, message=f"data for {expression}")


@pytest.fixture
def stack(distributed_stack: Callable[..., Stack]) -> Iterator[Stack]:
    yield distributed_stack(workers=1)


@pytest.mark.slow
def test_prometheus_records_the_rules_from_a_working_stack(stack: Stack, processes: Processes, tmp_path: Path) -> None:
    prometheus = start_prometheus(stack, processes, tmp_path)
    stack.create_user("ops", "operator")
    operator = stack.token("ops")
    run_id = httpx.post(f"{stack.orchestration_url}/api/v1/train", json=TRAIN, headers=operator).json()["run_id"]
    assert wait_run(stack, operator, run_id)["status"] == "succeeded"
    url = f"{stack.dashboard_url}/api/v1/evaluations"
    item = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": 150.0, "duration_ms": 30.0}
    for _ in range(5):  # spread over scrapes, so rates over 1 m have two points to work from
        assert httpx.post(f"{url}/batch", json={"items": [item] * 20}, headers=operator).status_code == 201
        assert httpx.get(url, headers=operator).status_code == 200
        # Both services serve requests in the window the SLO rules rate over.
        assert httpx.get(f"{stack.orchestration_url}/api/v1/runs", headers=operator).status_code == 200
        time.sleep(1)

    latency = wait_for_data(prometheus, "tars:evaluation_latency:p95:1m")
    by_agent = {sample["metric"]["agent_id"]: float(sample["value"][1]) for sample in latency}
    # 30 ms evaluations fall in the (0.025, 0.05] bucket.
    assert 0.025 < by_agent["ppo"] <= 0.05, by_agent
    # The worker's evaluations are timed too (recorded by orchestration); they came in one report,
    # so no rate over them: the rule leaves an agent out when nothing rose in its window.
    timed = wait_for_data(prometheus, 'tars_evaluation_duration_seconds_count{agent_id="dqn"}')
    assert float(timed[0]["value"][1]) == 3, timed
    for rule in ("tars:slo_compliance:api_latency", "tars:slo_compliance:error_rate"):
        # Each service's series appears once its rule has two scrapes of it: wait for both.
        samples = eventually(
            lambda rule=rule: found if len(found := query(prometheus, rule)) == 2 else None,
            90,
            interval=0.5,
            message=f"both services in {rule}",
        )
        services = {sample["metric"]["service"]: float(sample["value"][1]) for sample in samples}
        assert set(services) == {"dashboard-api", "orchestration"} and all(0 <= v <= 1 for v in services.values())
    assert wait_for_data(prometheus, "tars:slo_compliance:error_rate")  # nothing failed: close to 1
    success = wait_for_data(prometheus, "tars:slo_compliance:evaluation_success")
    assert float(success[0]["value"][1]) == 1.0

    targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    assert {target["labels"]["job"]: target["health"] for target in targets} == {
        "tars-dashboard-api": "up",
        "tars-orchestration": "up",
        "tars-worker": "up",
    }
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    broken = [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] == "err"]
    assert broken == []
    assert len(rules) >= 60
