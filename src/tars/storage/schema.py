"""Is the database at the schema this code expects? Answered without loading Alembic.

Services and workers that do not migrate only need this check; Alembic (with Mako and Pygments)
would cost a long-lived worker ~10 MB of memory for it.
"""

from __future__ import annotations

from sqlalchemy import Engine, inspect, text

# The newest migration in storage/migrations/versions; a test holds it equal to Alembic's head.
HEAD_REVISION = "0008_insight_feed"
VERSION_TABLE = "alembic_version"


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return None
        version: str | None = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
        return version


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == HEAD_REVISION
