"""Rate limits: per principal or address, by route class, shared by replicas through Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from tars.api.applications import create_dashboard_app, create_orchestration_app, shared_rate_limits
from tars.api.ratelimit import RateLimitMiddleware, RateLimits
from tars.services.auth.credentials import Authenticator
from tars.services.auth.invalidations_file import DataDirInvalidations
from tars.services.auth.tokens import TokenService
from tars.services.runtime import Runtime
from tars.settings import Settings
from tars.storage.database import make_engine, make_session_factory
from tars.wiring.ratelimits import rate_limit_storage
from tests.conftest import make_settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"rate_limit_login": "3/minute", "rate_limit_read": "5/minute", "rate_limit_write": "2/minute"}
    )


def test_a_principal_over_its_budget_gets_429_with_retry_after(
    dashboard: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    statuses = []
    for _ in range(6):
        response = dashboard.get("/api/v1/agents", headers=auth["viewer"])
        statuses.append(response.status_code)
    assert statuses == [200] * 5 + [429]
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["RateLimit-Limit"] == "5"
    assert response.headers["RateLimit-Remaining"] == "0"
    assert "5 per 1 minute" in response.json()["detail"]
    # Another principal has a budget of its own; writes have theirs.
    assert dashboard.get("/api/v1/agents", headers=auth["operator"]).status_code == 200
    body = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": 1}
    writes = [dashboard.post("/api/v1/evaluations", json=body, headers=auth["viewer"]).status_code for _ in range(3)]
    assert writes == [403, 403, 429]


def test_successful_responses_say_what_is_left(dashboard: TestClient, auth: dict[str, dict[str, str]]) -> None:
    first = dashboard.get("/api/v1/runs", headers=auth["admin"])
    second = dashboard.get("/api/v1/runs", headers=auth["admin"])
    assert (first.headers["RateLimit-Remaining"], second.headers["RateLimit-Remaining"]) == ("4", "3")
    assert 0 <= int(second.headers["RateLimit-Reset"]) <= 60


def test_login_is_limited_per_address_whoever_is_named(dashboard: TestClient, users: dict[str, str]) -> None:
    statuses = [
        dashboard.post("/api/v1/auth/login", json={"username": f"guess-{n}", "password": "wrong-password"}).status_code
        for n in range(4)
    ]
    assert statuses == [401, 401, 401, 429]


def test_public_routes_outside_the_api_are_not_counted(dashboard: TestClient) -> None:
    assert {dashboard.get("/health").status_code for _ in range(10)} == {200}


@pytest.fixture
def replicas(dashboard: TestClient, second_replica: TestClient) -> tuple[TestClient, TestClient]:
    return dashboard, second_replica


@pytest.mark.parametrize("backend", ["distributed"], indirect=True)
def test_replicas_on_redis_share_one_budget(
    replicas: tuple[TestClient, TestClient], auth: dict[str, dict[str, str]], redis_url: str
) -> None:
    first, second = replicas
    statuses = [client.get("/api/v1/agents", headers=auth["viewer"]).status_code for client in [first, second] * 3]
    assert statuses == [200] * 5 + [429]
    assert redis.Redis.from_url(redis_url).keys("rate_limit:*")


def test_unreachable_counters_let_requests_through(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, refusing_port: int
) -> None:
    async def ok(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    dead = make_settings(tmp_path, redis_url=f"redis://127.0.0.1:{refusing_port}/0")
    app = Starlette()
    sessions = make_session_factory(make_engine(f"sqlite:///{tmp_path / 'unused.db'}"))
    authenticator = Authenticator(TokenService("t" * 48, 60), sessions, DataDirInvalidations(tmp_path))
    app.add_middleware(
        RateLimitMiddleware, limits=RateLimits(dead, rate_limit_storage(dead)), authenticator=authenticator
    )
    app.mount("/api", ok)
    with TestClient(app) as client:
        assert client.get("/api/v1/agents").status_code == 200
    assert "rate limiter unavailable" in caplog.text


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_the_two_services_of_one_process_share_one_budget(runtime: Runtime, auth: dict[str, dict[str, str]]) -> None:
    limits = shared_rate_limits(runtime)  # what `tars up` hands both services
    with (
        TestClient(create_dashboard_app(runtime, rate_limits=limits)) as dashboard,
        TestClient(create_orchestration_app(runtime, rate_limits=limits)) as orchestration,
    ):
        statuses = [
            client.get("/api/v1/agents", headers=auth["viewer"]).status_code
            for client in [dashboard, orchestration] * 3
        ]
    assert statuses == [200] * 5 + [429]
