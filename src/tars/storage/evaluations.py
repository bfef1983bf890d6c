"""Evaluations: insert many, delete, and read pages of them newest first (keyset: after a position)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, Select, delete, insert, select, text
from sqlalchemy.orm import Session

from tars.domain.errors import NotFound
from tars.domain.evaluations import (
    EVALUATION_FIELDS,
    Evaluation,
    EvaluationFilter,
    EvaluationPage,
    NewEvaluation,
    Position,
    decode_cursor,
    encode_cursor,
)
from tars.storage import rollups
from tars.storage.keyset import newest_first
from tars.storage.tables import EvaluationRow
from tars.storage.types import utcnow

EVALUATION_COLUMNS = EVALUATION_FIELDS


def _evaluation_of(row: EvaluationRow) -> Evaluation:
    return Evaluation(*(getattr(row, column) for column in EVALUATION_COLUMNS))


# Below this many rows one INSERT … RETURNING beats drawing ids and a COPY (three round trips).
COPY_FROM = 50
_COPY_TYPES = ("int8", "varchar", "varchar", "varchar", "varchar", "float8", "int4", "float8", "varchar", "timestamptz")


def insert_evaluations(session: Session, new: Sequence[NewEvaluation]) -> list[Evaluation]:
    """Many evaluations at once, in the order given, and their rollups with them.

    Many on PostgreSQL: ids drawn from the sequence in one query, then a binary COPY — a batch of
    1,000 as one multi-row INSERT spent most of its time in the driver splitting a 7,000-parameter
    statement. Per-row work is one tuple: this runs for every evaluation ingested.
    """
    if not new:
        return []
    now = utcnow()
    if len(new) >= COPY_FROM and session.get_bind().dialect.name == "postgresql":
        stored = [
            Evaluation(id_, e.agent_id, e.run_id, e.environment, e.region, e.reward,
                             e.episode_length, e.duration_ms, e.status, e.created_at or now)
            for id_, e in zip(_draw_ids(session, len(new)), new, strict=True)
        ]  # fmt: skip
        _copy_in(session, stored)
    else:
        statement = insert(EvaluationRow).returning(*EvaluationRow.__table__.c, sort_by_parameter_order=True)
        values = [
            {"agent_id": e.agent_id, "run_id": e.run_id, "environment": e.environment, "region": e.region,
             "reward": e.reward, "episode_length": e.episode_length, "duration_ms": e.duration_ms,
             "status": e.status, "created_at": e.created_at or now}
            for e in new
        ]  # fmt: skip
        stored = [Evaluation(*row) for row in session.execute(statement, values)]
    rollups.add(session, stored)
    return stored


def _draw_ids(session: Session, count: int) -> list[int]:
    # One row holding them all: a row per id cost more to fetch than drawing them.
    drawn = session.execute(
        text(
            "SELECT array_agg(id ORDER BY id) FROM "
            "(SELECT nextval(pg_get_serial_sequence('evaluations', 'id')) AS id FROM generate_series(1, :count)) drawn"
        ),
        {"count": count},
    ).scalar_one()
    return list(drawn)


def _copy_in(session: Session, stored: list[Evaluation]) -> None:
    raw = session.connection().connection.driver_connection
    assert raw is not None
    statement = f"COPY evaluations ({', '.join(EVALUATION_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(_COPY_TYPES)
        for evaluation in stored:
            copy.write_row(evaluation)


COLUMNS = ("agent_id", "environment", "region", "reward", "episode_length", "duration_ms", "status", "created_at")


def bulk_load(engine: Engine, rows: Iterable[dict[str, Any]], *, chunk: int = 10_000) -> int:
    """Load many evaluations as fast as the database takes them (COPY on PostgreSQL, batched
    inserts on SQLite), each chunk in its own transaction; returns how many."""
    loaded = 0
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            raw = connection.connection.driver_connection
            assert raw is not None
            with raw.cursor() as cursor, cursor.copy(f"COPY evaluations ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[column] for column in COLUMNS])
                    loaded += 1
            raw.commit()
        _rebuild_rollups(engine)
        return loaded
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == chunk:
            loaded += _insert_chunk(engine, batch)
            batch = []
    loaded += _insert_chunk(engine, batch)
    _rebuild_rollups(engine)
    return loaded


def _rebuild_rollups(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        rollups.rebuild(session)


def _insert_chunk(engine: Engine, batch: list[dict[str, Any]]) -> int:
    if batch:
        with engine.begin() as connection:
            connection.execute(insert(EvaluationRow), batch)
    return len(batch)


def evaluation_page_query(where: EvaluationFilter, *, limit: int, after: Position | None = None) -> Select[Any]:
    """One page of evaluations, newest first, from after ``after``: plain rows, not ORM objects (a
    page is read, never changed, and this is the hottest query). One more row than ``limit`` is
    asked for, to know whether another page follows."""
    query = select(*EvaluationRow.__table__.c)
    for column, value in (
        (EvaluationRow.agent_id, where.agent_id),
        (EvaluationRow.environment, where.environment),
        (EvaluationRow.region, where.region),
        (EvaluationRow.run_id, where.run_id),
    ):
        if value is not None:
            query = query.where(column == value)
    return newest_first(
        query,
        EvaluationRow.created_at,
        EvaluationRow.id,
        since=where.since,
        until=where.until,
        after=after,
        limit=limit,
    )


def read_page(session: Session, where: EvaluationFilter, *, limit: int, after: Position | None) -> list[Evaluation]:
    """Up to ``limit`` + 1 evaluations after ``after``, newest first."""
    return [Evaluation(*row) for row in session.execute(evaluation_page_query(where, limit=limit, after=after))]


def page_of(rows: list[Evaluation], limit: int) -> EvaluationPage:
    """A page of ``limit`` from ``limit`` + 1 rows read: the one more says another page follows."""
    items = rows[:limit]
    last = items[-1] if len(rows) > limit and items else None
    return EvaluationPage(items, encode_cursor(Position(last.created_at, last.id)) if last is not None else None)


def list_evaluations(
    session: Session, where: EvaluationFilter, *, limit: int, cursor: str | None = None
) -> EvaluationPage:
    after = decode_cursor(cursor) if cursor is not None else None
    return page_of(read_page(session, where, limit=limit, after=after), limit)


def delete_evaluation(session: Session, evaluation_id: int) -> Evaluation:
    """Delete one evaluation (NotFound if there is none) and sum its hour again; what it was."""
    row = session.get(EvaluationRow, evaluation_id)
    if row is None:
        raise NotFound("evaluation", evaluation_id)
    deleted = _evaluation_of(row)
    session.delete(row)
    session.flush()
    rollups.recompute(session, rollups.hours_of([deleted]))
    return deleted


def delete_run_evaluations(session: Session, run_id: str) -> None:
    """A run's evaluations, gone with an attempt that starts over; their hours summed again."""
    stored = list(session.scalars(select(EvaluationRow).where(EvaluationRow.run_id == run_id)))
    if not stored:
        return
    session.execute(delete(EvaluationRow).where(EvaluationRow.run_id == run_id))
    rollups.recompute(session, rollups.hours_of(stored))
