"""The database schema as an operator sees it: bring it up to date, take it back, say where it is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from tars.storage import migrate

Report = Callable[[str], None]


@dataclass(frozen=True)
class IndexState:
    name: str
    valid: bool


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None  # None: an empty database
    head: str | None
    indexes: list[IndexState]

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


class SchemaService:
    """Migrations on one database; the engine is built (without a statement timeout: building an
    index over millions of rows takes longer) and disposed by whoever made it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def current(self) -> str | None:
        return migrate.current_revision(self._engine)

    def upgrade(self, revision: str = "head", report: Report | None = None) -> None:
        migrate.upgrade(self._engine, revision, report=report)

    def downgrade(self, revision: str, report: Report | None = None) -> None:
        migrate.downgrade(self._engine, revision, report=report)

    def status(self) -> SchemaStatus:
        return SchemaStatus(
            current=migrate.current_revision(self._engine),
            head=migrate.head_revision(self._engine),
            indexes=[IndexState(name, valid) for name, valid in migrate.index_states(self._engine)],
        )
