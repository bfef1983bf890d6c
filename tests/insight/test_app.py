"""The insight-engine service: /health as the other services answer it, /metrics with the feed's lag and
the evaluations processed, and `tars serve insight-engine` as a real process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tars.domain.insights import FindingKind, Severity
from tars.insight.app import create_insight_app
from tars.services.runtime import Runtime
from tars.wiring.insight import build_insight_engine
from tests.conftest import TEST_SECRET
from tests.insight.conftest import BUILTIN_AGENTS, RecordingSink, post_batch
from tests.waiting import eventually


class CountingSink(RecordingSink):
    """A sink that can also count open insights, as the insight records can."""

    def open_counts(self) -> dict[tuple[FindingKind, Severity], int]:
        return {(FindingKind.REWARD_REGRESSION, Severity.CRITICAL): 2, (FindingKind.LEARNING_STALL, Severity.INFO): 0}


def test_health_and_metrics_of_the_insight_engine(
    runtime: Runtime, dashboard: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    engine = build_insight_engine(runtime, CountingSink(), replica="app")
    with TestClient(create_insight_app(runtime, engine)) as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json() == {
            "status": "ok",
            "version": "v1.0.1",
            "service": "insight-engine",
            "region": runtime.settings.region,
        }
        eventually(lambda: set(engine.owned()) == BUILTIN_AGENTS, message="the engine to own every agent")
        post_batch(dashboard, auth["operator"], [{"agent_id": "ppo", "environment": "CartPole-v1", "reward": 3.0}] * 40)
        eventually(lambda: engine.evaluations_processed == 40, message="the batch to be processed")
        text = client.get("/metrics").text
        assert re.search(r'^tars_insight_evaluations_processed_total\{version="v1.0.1"\} \d+', text, re.M)
        assert 'tars_insight_feed_lag_events{agent="ppo"} 0.0' in text
        assert 'tars_insights_open{kind="reward_regression",severity="critical"} 2.0' in text
        assert 'tars_insights_open{kind="learning_stall",severity="info"} 0.0' in text
        assert 'http_requests_total{code="200",method="GET",route="/health",service="insight-engine"' in text
    assert not engine.running  # stopped with the app, its agents handed back


@pytest.mark.parametrize("backend", ["distributed"], indirect=True)
def test_tars_serve_insight_engine_answers_health(
    runtime: Runtime, tmp_path: Path, redis_url: str, seeded_postgres_url: str
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TARS_")}
    env |= {
        "TARS_DATA_DIR": str(tmp_path / "data"),
        "TARS_JWT_SECRET": TEST_SECRET,
        "TARS_DATABASE_URL": seeded_postgres_url,
        "TARS_REDIS_URL": redis_url,
        "TARS_INSIGHT_REPLICA": "served",
        "TARS_LOG_LEVEL": "INFO",
    }
    log = tmp_path / "insight.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tars", "serve", "insight-engine", "--port", "0"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def listening() -> str | None:
            if process.poll() is not None:
                raise AssertionError(f"exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            found = re.search(r"insight-engine listening on (http://\S+)", log.read_text())
            return found[1] if found else None

        url = eventually(listening, 60, interval=0.1, message="the service to say where it listens")
        body: dict[str, Any] = httpx.get(f"{url}/health", timeout=5).json()
        assert (body["status"], body["version"], body["service"]) == ("ok", "v1.0.1", "insight-engine")
        eventually(lambda: "watching ppo" in log.read_text(), 30, message="the engine to take the agents")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()[-3000:]
