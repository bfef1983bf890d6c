"""The database as the operator's commands reach it: migrations run without the API's statement
timeout (an index built over millions of rows takes longer)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tars.services.schema import SchemaService
from tars.settings import Settings
from tars.storage.database import make_engine


@contextmanager
def schema_service(settings: Settings) -> Iterator[SchemaService]:
    engine = make_engine(settings.sqlalchemy_url, settings.db_pool(statement_timeout=False))
    try:
        yield SchemaService(engine)
    finally:
        engine.dispose()
