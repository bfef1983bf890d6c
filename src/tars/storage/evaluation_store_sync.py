"""Evaluations through the runtime's SQLAlchemy sessions, in a worker thread (SQLite: its driver
blocks, so neither a read nor a write runs on the event loop)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial

from anyio import to_thread

from tars.domain.evaluations import Evaluation, EvaluationFields, EvaluationFilter, NewEvaluation, Position
from tars.storage.agents import existing_agent_ids
from tars.storage.database import SessionFactory, transaction
from tars.storage.evaluations import insert_evaluations, read_page


class SyncEvaluationStore:
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

    async def insert(self, new: Sequence[NewEvaluation], now: datetime, *, all_or_nothing: bool) -> list[Evaluation]:
        return await to_thread.run_sync(partial(self._insert, new, now, all_or_nothing=all_or_nothing))

    def _insert(self, new: Sequence[NewEvaluation], now: datetime, *, all_or_nothing: bool) -> list[Evaluation]:
        with transaction(self._sessions) as session:
            known = existing_agent_ids(session, {item.agent_id for item in new})
            chosen = [item._replace(created_at=item.created_at or now) for item in new if item.agent_id in known]
            if all_or_nothing and len(chosen) < len(new):
                return []
            return insert_evaluations(session, chosen)

    async def known_agents(self, agent_ids: set[str]) -> set[str]:
        return await to_thread.run_sync(self._known_agents, agent_ids)

    def _known_agents(self, agent_ids: set[str]) -> set[str]:
        with self._sessions() as session:
            return existing_agent_ids(session, agent_ids)
