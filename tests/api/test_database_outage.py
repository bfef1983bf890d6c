"""PostgreSQL going away and coming back: requests get a clear 503 meanwhile, and T.A.R.S. recovers
by itself, without a restart."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tars.api.applications import create_dashboard_app
from tars.services.runtime import Runtime
from tars.settings import PoolSettings
from tars.storage.database import make_engine

pytestmark = pytest.mark.parametrize("backend", ["distributed"], indirect=True)


def set_connections(admin_url: str, database: str, *, allowed: bool) -> None:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:  # what a restart does to the connections in every pool
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))


def test_a_database_outage_is_a_503_and_recovery_needs_no_restart(
    dashboard: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]], postgres_admin_url: str
) -> None:
    database = runtime.engine.url.database
    assert database is not None
    assert dashboard.get("/api/v1/agents", headers=auth["viewer"]).status_code == 200
    assert dashboard.get("/api/v1/evaluations", headers=auth["viewer"]).status_code == 200  # pools filled
    set_connections(postgres_admin_url, database, allowed=False)
    try:
        listed = dashboard.get("/api/v1/evaluations", headers=auth["viewer"])  # the hot list's own pool too
        assert listed.status_code == 503 and listed.json()["detail"] == "the database is unavailable; try again shortly"
        down = dashboard.get("/api/v1/agents", headers=auth["viewer"])
        assert down.status_code == 503
        assert down.json()["detail"] == "the database is unavailable; try again shortly"
        assert down.headers["retry-after"] == "5"
        body = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": 1.0}
        assert dashboard.post("/api/v1/evaluations", json=body, headers=auth["operator"]).status_code == 503
        assert dashboard.get("/health").status_code == 200  # the process itself is fine
    finally:
        set_connections(postgres_admin_url, database, allowed=True)
    assert dashboard.get("/api/v1/agents", headers=auth["viewer"]).status_code == 200
    body = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": 2.0}
    assert dashboard.post("/api/v1/evaluations", json=body, headers=auth["operator"]).status_code == 201
    assert [e["reward"] for e in dashboard.get("/api/v1/evaluations", headers=auth["viewer"]).json()["items"]] == [2.0]


def test_a_dashboard_started_while_the_database_is_down_starts_and_recovers(
    runtime: Runtime, auth: dict[str, dict[str, str]], postgres_admin_url: str
) -> None:
    database = runtime.engine.url.database
    assert database is not None
    set_connections(postgres_admin_url, database, allowed=False)
    try:
        with TestClient(create_dashboard_app(runtime)) as dashboard:
            assert dashboard.get("/health").status_code == 200
            assert dashboard.get("/api/v1/evaluations", headers=auth["viewer"]).status_code == 503
            set_connections(postgres_admin_url, database, allowed=True)
            assert dashboard.get("/api/v1/evaluations", headers=auth["viewer"]).status_code == 200
    finally:
        set_connections(postgres_admin_url, database, allowed=True)


def test_a_runaway_statement_is_cancelled_by_the_statement_timeout(runtime: Runtime) -> None:
    engine = make_engine(
        runtime.engine.url.render_as_string(hide_password=False), PoolSettings(statement_timeout_ms=200)
    )
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
            with pytest.raises(OperationalError) as raised:
                connection.execute(text("SELECT pg_sleep(2)"))
        assert isinstance(raised.value.orig, psycopg.errors.QueryCanceled)
    finally:
        engine.dispose()
    assert runtime.settings.db_statement_timeout_ms == 5_000  # the API's default
