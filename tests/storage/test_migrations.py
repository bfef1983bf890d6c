from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from tars.domain.errors import SchemaOutOfDate
from tars.storage import migrate, schema
from tars.storage.database import make_engine
from tars.wiring.runtime import build_runtime
from tests.conftest import make_settings

TABLES = {"agents", "training_runs", "training_steps", "evaluations", "users", "api_keys", "auth_sessions",
          "refresh_tokens", "audit_events"}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tars.db'}"
    url: str = request.getfixturevalue("empty_postgres_url")
    return url


def test_upgrade_creates_the_schema_and_downgrade_removes_it(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        assert migrate.current_revision(engine) is None
        assert schema.current_revision(engine) is None
        migrate.upgrade(engine)
        assert schema.is_current(engine)
        assert schema.current_revision(engine) == migrate.current_revision(engine)
        assert set(inspect(engine).get_table_names()) >= TABLES
        columns = {c["name"] for c in inspect(engine).get_columns("evaluations")}
        assert columns >= {"id", "agent_id", "run_id", "environment", "region", "reward", "episode_length",
                           "duration_ms", "status", "created_at"}  # fmt: skip
        migrate.downgrade(engine, "0001_v1_0_0")
        assert not schema.is_current(engine)
        migrate.downgrade(engine, "base")
        assert not TABLES & set(inspect(engine).get_table_names())
        migrate.upgrade(engine)
        assert schema.is_current(engine)
    finally:
        engine.dispose()


def test_services_refuse_an_out_of_date_schema(empty_database_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url=empty_database_url)
    with pytest.raises(SchemaOutOfDate, match="tars db upgrade"):
        build_runtime(settings, migrate_schema=False)


def test_the_head_the_services_expect_is_the_newest_migration(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'tars.db'}")
    try:
        assert migrate.head_revision(engine) == schema.HEAD_REVISION
    finally:
        engine.dispose()


def test_the_migrations_build_exactly_the_schema_the_code_declares(empty_database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from tars.storage.tables import Base

    engine = make_engine(empty_database_url)
    try:
        migrate.upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_bulk_load_takes_generated_evaluations_on_both_databases(empty_database_url: str) -> None:
    from tars.services.seeding import generate_evaluations
    from tars.storage import evaluations
    from tars.storage.agents import ensure_builtin_agents
    from tars.storage.database import make_session_factory, transaction
    from tars.storage.types import utcnow

    engine = make_engine(empty_database_url)
    try:
        migrate.upgrade(engine)
        with transaction(make_session_factory(engine)) as session:
            ensure_builtin_agents(session)
        assert evaluations.bulk_load(engine, generate_evaluations(2_500, now=utcnow(), seed=1), chunk=1_000) == 2_500
        with make_session_factory(engine)() as session:
            page = evaluations.list_evaluations(session, evaluations.EvaluationFilter(agent_id="ppo"), limit=1000)
        assert len(page.items) == 625 and page.next_cursor is None
    finally:
        engine.dispose()
