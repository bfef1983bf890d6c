"""The database as the operator's commands reach it: migrations run without the API's statement
timeout (an index built over millions of rows takes longer), and commands that change data work on a
schema that is up to date."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from tars.domain.errors import SchemaOutOfDate
from tars.services.schema import SchemaService
from tars.services.seeding import EvaluationSeeder
from tars.settings import Settings
from tars.storage import schema
from tars.storage.database import make_engine


@contextmanager
def schema_service(settings: Settings) -> Iterator[SchemaService]:
    engine = make_engine(settings.sqlalchemy_url, settings.db_pool(statement_timeout=False))
    try:
        yield SchemaService(engine)
    finally:
        engine.dispose()


@contextmanager
def command_engine(settings: Settings, *, require_current_schema: bool = False) -> Iterator[Engine]:
    """An engine for a command, disposed afterwards. Embedded, the schema is brought up to date first
    (as `tars up` would); distributed, a command that needs it refuses an out-of-date schema."""
    engine = make_engine(settings.sqlalchemy_url)
    try:
        if settings.embedded:
            SchemaService(engine).upgrade()
        elif require_current_schema and not schema.is_current(engine):
            raise SchemaOutOfDate("the database schema is not up to date; run `tars db upgrade` first")
        yield engine
    finally:
        engine.dispose()


@contextmanager
def open_seeder(settings: Settings) -> Iterator[EvaluationSeeder]:
    with command_engine(settings, require_current_schema=True) as engine:
        yield EvaluationSeeder(engine)
