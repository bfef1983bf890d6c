"""Indexes built without blocking writes: ``CREATE INDEX CONCURRENTLY`` done as it must be.

On PostgreSQL each index is built outside a transaction, with a lock timeout (so the build never
queues writers behind it for long) and no statement timeout (a build over millions of rows takes
minutes); afterwards ``pg_index.indisvalid`` is checked. A build that fails part-way leaves an
INVALID index behind that ``IF NOT EXISTS`` would keep for ever: it is found, dropped concurrently
and built again, a few times. On SQLite the same indexes are built plainly.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from alembic import op
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

log = logging.getLogger("tars.migrations")

LOCK_TIMEOUT = "5s"
ATTEMPTS = 3


class IndexBuildFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class IndexSpec:
    name: str
    table: str
    # Column expressions as SQL: "agent_id", "created_at DESC".
    columns: tuple[str, ...]
    where: str | None = None
    # Covered columns (PostgreSQL INCLUDE), for index-only scans; SQLite has none.
    include: tuple[str, ...] = field(default_factory=tuple)

    def create_sql(self, dialect: str) -> str:
        concurrently = " CONCURRENTLY" if dialect == "postgresql" else ""
        exists = " IF NOT EXISTS" if dialect != "postgresql" else ""
        sql = f"CREATE INDEX{concurrently}{exists} {self.name} ON {self.table} ({', '.join(self.columns)})"
        if self.include and dialect == "postgresql":
            sql += f" INCLUDE ({', '.join(self.include)})"
        if self.where:
            sql += f" WHERE {self.where}"
        return sql


def index_validity(connection: Connection, name: str) -> bool | None:
    """True valid, False INVALID (a failed concurrent build), None absent (PostgreSQL)."""
    found = connection.execute(
        text(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = :name AND n.nspname = current_schema()"
        ),
        {"name": name},
    ).scalar()
    return None if found is None else bool(found)


def create_indexes(*specs: IndexSpec) -> None:
    """Called from a migration's upgrade()."""
    context = op.get_context()
    if context.dialect.name != "postgresql":
        for spec in specs:
            op.execute(spec.create_sql(context.dialect.name))
        return
    with context.autocommit_block():
        connection = op.get_bind()
        connection.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
        connection.execute(text("SET statement_timeout = 0"))
        for spec in specs:
            _build(connection, spec)


def drop_indexes(*specs: IndexSpec) -> None:
    """Called from a migration's downgrade()."""
    context = op.get_context()
    if context.dialect.name != "postgresql":
        for spec in specs:
            op.execute(f"DROP INDEX IF EXISTS {spec.name}")
        return
    with context.autocommit_block():
        connection = op.get_bind()
        connection.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
        for spec in specs:
            connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {spec.name}"))
            log.info("dropped index %s", spec.name)


def _build(connection: Connection, spec: IndexSpec) -> None:
    for attempt in range(1, ATTEMPTS + 1):
        state = index_validity(connection, spec.name)
        if state is True:
            log.info("index %s is there and valid", spec.name)
            return
        if state is False:
            log.warning("index %s is INVALID (an earlier build failed); dropping it to build again", spec.name)
            connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {spec.name}"))
        started = time.monotonic()
        try:
            connection.execute(text(spec.create_sql("postgresql")))
        except DBAPIError as exc:
            # A lock wait past the timeout, or a cancelled build: what is left is INVALID, and the
            # next attempt drops it.
            log.warning("building index %s failed (attempt %d of %d): %s", spec.name, attempt, ATTEMPTS, exc.orig)
            time.sleep(min(2.0 * attempt, 5.0))
            continue
        if index_validity(connection, spec.name) is True:
            log.info("built index %s in %.1f s", spec.name, time.monotonic() - started)
            return
    raise IndexBuildFailed(f"index {spec.name} could not be built valid in {ATTEMPTS} attempts")
