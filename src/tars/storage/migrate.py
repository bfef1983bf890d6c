"""Schema migrations through Alembic, driven from code so no alembic.ini has to ship."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


Report = Callable[[str], None]


def upgrade(engine: Engine, revision: str = "head", report: Report | None = None) -> None:
    _run(engine, command.upgrade, revision, report)


def downgrade(engine: Engine, revision: str, report: Report | None = None) -> None:
    _run(engine, command.downgrade, revision, report)


def _run(engine: Engine, step: Callable[[Config, str], None], revision: str, report: Report | None) -> None:
    config = _config(engine)
    if report is not None:
        config.attributes["on_version_apply"] = _reporter(report)
    # Not in one transaction: each migration gets its own (env.py), and an index built CONCURRENTLY
    # must run outside any.
    with engine.connect() as connection, _index_build_progress(engine, report):
        config.attributes["connection"] = connection
        step(config, revision)


def _reporter(report: Report) -> Callable[..., None]:
    started = [time.monotonic()]

    def applied(*, step: Any, **_: Any) -> None:
        now = time.monotonic()
        doc = (step.up_revision.doc or "").splitlines()[0] if step.up_revision is not None else ""
        done = "applied" if step.is_upgrade else "reverted"
        report(f"{done} {step.up_revision_id}: {doc} ({now - started[0]:.1f} s)")
        started[0] = now

    return applied


@contextmanager
def _index_build_progress(engine: Engine, report: Report | None) -> Iterator[None]:
    """On PostgreSQL, say how far each long index build is (pg_stat_progress_create_index)."""
    if report is None or engine.dialect.name != "postgresql":
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        last = None
        while not stop.wait(PROGRESS_SECONDS):
            try:
                with engine.connect() as connection:
                    rows = connection.execute(text(PROGRESS_QUERY)).all()
            except Exception:  # progress is a courtesy; the migration reports its own failures
                continue
            for index, phase, done, total in rows:
                line = f"  building {index}: {phase}" + (f", {100 * done / total:.0f} %" if total else "")
                if line != last:
                    report(line)
                    last = line

    watcher = threading.Thread(target=watch, name="tars-index-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(timeout=5)


PROGRESS_SECONDS = 2.0
PROGRESS_QUERY = """
SELECT c.relname, p.phase,
       CASE WHEN p.blocks_total > 0 THEN p.blocks_done ELSE p.tuples_done END,
       CASE WHEN p.blocks_total > 0 THEN p.blocks_total ELSE p.tuples_total END
FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.index_relid
WHERE p.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(_config(engine)).get_current_head()


def index_states(engine: Engine) -> list[tuple[str, bool]]:
    """T.A.R.S.'s own indexes (idx_*) on PostgreSQL and whether each is valid; none on SQLite."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relname LIKE 'idx\\_%' ORDER BY c.relname"
            )
        ).all()
    return [(str(name), bool(valid)) for name, valid in rows]
