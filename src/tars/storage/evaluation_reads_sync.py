"""Pages of evaluations through the runtime's SQLAlchemy sessions, read in a worker thread (SQLite:
its driver blocks, so the read never runs on the event loop)."""

from __future__ import annotations

from anyio import to_thread

from tars.domain.evaluations import EvaluationFields, EvaluationFilter, Position
from tars.storage.database import SessionFactory
from tars.storage.evaluations import read_page


class SyncEvaluationReader:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def start(self) -> None:
        """Nothing to open: the runtime's engine serves."""

    async def close(self) -> None:
        """Nothing to close: the runtime's engine is disposed with it."""

    async def page(self, where: EvaluationFilter, *, limit: int, after: Position | None) -> list[EvaluationFields]:
        return await to_thread.run_sync(self._read, where, limit, after)

    def _read(self, where: EvaluationFilter, limit: int, after: Position | None) -> list[EvaluationFields]:
        with self._sessions() as session:
            return [evaluation._asdict() for evaluation in read_page(session, where, limit=limit, after=after)]
