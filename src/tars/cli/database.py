"""The database for commands that work on it directly (users, API keys, seeding)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from tars.domain.errors import TarsError
from tars.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine


@contextmanager
def database(settings: Settings, *, require_current_schema: bool = False) -> Iterator[Engine]:
    """An engine on the settings' database, disposed afterwards. Embedded, the schema is brought up
    to date first (as `tars up` would); a domain error becomes the command's error message."""
    from tars.storage import migrate, schema
    from tars.storage.database import make_engine

    engine = make_engine(settings.sqlalchemy_url)
    try:
        if settings.embedded:
            migrate.upgrade(engine)
        elif require_current_schema and not schema.is_current(engine):
            raise click.ClickException("the database schema is not up to date; run `tars db upgrade` first")
        yield engine
    except TarsError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        engine.dispose()
