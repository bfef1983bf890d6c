"""Both evaluation stores store what they are given with its rollups, as the raw rows sum them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from tars.domain.evaluations import Evaluation, NewEvaluation
from tars.services.runtime import Runtime
from tars.storage import rollups
from tars.storage.database import make_engine, transaction
from tars.storage.evaluation_store_postgres import EVALUATION_IDS
from tars.storage.tables import evaluation_rollups


def _varied(count: int) -> list[NewEvaluation]:
    """Agents, regions, failures, missing and extreme durations, and four different hours."""
    start = datetime(2026, 11, 30, 10, 15, tzinfo=UTC)
    return [
        NewEvaluation(
            agent_id=("ppo", "dqn")[n % 2],
            environment="CartPole-v1",
            reward=float(n * 7 % 500) - 20.0,
            region=("eu-west-1", "us-east-1", "us-west-2")[n % 3],
            episode_length=n,
            duration_ms=None if n % 5 == 0 else (0.1, 3.0, 250.0, 10**6)[n % 4] + n,
            status="failed" if n % 7 == 0 else "completed",
            created_at=start + timedelta(minutes=17 * (n % 13)),
        )
        for n in range(count)
    ]


def _rollups(runtime: Runtime) -> list[dict[str, Any]]:
    with runtime.sessions() as session:
        rows = session.execute(select(evaluation_rollups).order_by(*evaluation_rollups.primary_key)).mappings()
        return [
            {key: (round(value, 6) if isinstance(value, float) else value) for key, value in row.items()}
            for row in rows
        ]


def _insert(runtime: Runtime, new: list[NewEvaluation], *, all_or_nothing: bool) -> list[Evaluation]:
    async def insert() -> list[Evaluation]:
        await runtime.evaluations.start()
        try:
            store = runtime.evaluations.evaluation_store
            return await store.insert(new, datetime.now(UTC), all_or_nothing=all_or_nothing)
        finally:
            await runtime.evaluations.close()

    return asyncio.run(insert())


def test_stored_evaluations_come_back_in_order_and_their_rollups_equal_the_raw_rows_sums(runtime: Runtime) -> None:
    given = _varied(120)
    stored = _insert(runtime, given[:70], all_or_nothing=True)
    stored += _insert(runtime, given[70:], all_or_nothing=False)
    assert [row.reward for row in stored] == [item.reward for item in given]
    assert [row.created_at for row in stored] == [item.created_at for item in given]
    assert [row.id for row in stored] == sorted(row.id for row in stored)
    kept = _rollups(runtime)
    with transaction(runtime.sessions) as session:
        rollups.rebuild(session)
    assert kept == _rollups(runtime)
    assert sum(row["count"] for row in kept) == 120


@pytest.mark.parametrize("all_or_nothing", [True, False])
def test_an_unknown_agent_is_left_out_or_stops_all(runtime: Runtime, all_or_nothing: bool) -> None:
    given = _varied(10)
    given[3] = given[3]._replace(agent_id="nobody")
    stored = _insert(runtime, given, all_or_nothing=all_or_nothing)
    if all_or_nothing:
        assert stored == [] and _rollups(runtime) == []
    else:
        assert [row.reward for row in stored] == [item.reward for i, item in enumerate(given) if i != 3]
        assert sum(row["count"] for row in _rollups(runtime)) == 9


def test_batches_draw_their_ids_from_the_sequence_the_schema_gives_evaluations(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as connection:
            sequence = connection.scalar(text("SELECT pg_get_serial_sequence('evaluations', 'id')"))
    finally:
        engine.dispose()
    assert sequence == f"public.{EVALUATION_IDS}"
