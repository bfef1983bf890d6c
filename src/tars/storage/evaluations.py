"""Evaluations: insert one, and page through them newest first with a keyset cursor."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine, Row, Select, and_, delete, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from tars.domain.errors import InvalidField, NotFound
from tars.storage import rollups
from tars.storage.tables import EvaluationRow
from tars.storage.types import utcnow


@dataclass(frozen=True)
class EvaluationFilter:
    agent_id: str | None = None
    environment: str | None = None
    region: str | None = None
    run_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class EvaluationPage:
    # Rows with an evaluation's columns as attributes (id, agent_id, ..., created_at).
    items: list[Row[Any]]
    next_cursor: str | None


class NewEvaluation(NamedTuple):
    """An evaluation to store: what a client submits or a worker reports (a tuple: a thousand are
    made per batch, and a frozen dataclass costs nearly three times as much to make)."""

    agent_id: str
    environment: str
    reward: float
    region: str
    episode_length: int | None = None
    duration_ms: float | None = None
    status: str = "completed"
    run_id: str | None = None
    created_at: datetime | None = None  # now, if not given


class StoredEvaluation(NamedTuple):
    """An evaluation as just stored: what rollups, events and answers need, without an ORM object.
    A tuple in the table's column order, so COPY takes it as it is."""

    id: int
    agent_id: str
    run_id: str | None
    environment: str
    region: str
    reward: float
    episode_length: int | None
    duration_ms: float | None
    status: str
    created_at: datetime


EVALUATION_COLUMNS = StoredEvaluation._fields


def stored_evaluation(row: EvaluationRow) -> StoredEvaluation:
    return StoredEvaluation(*(getattr(row, column) for column in EVALUATION_COLUMNS))


# Below this many rows one INSERT … RETURNING beats drawing ids and a COPY (three round trips).
COPY_FROM = 50
_COPY_TYPES = ("int8", "varchar", "varchar", "varchar", "varchar", "float8", "int4", "float8", "varchar", "timestamptz")


def insert_evaluations(session: Session, new: Sequence[NewEvaluation]) -> list[StoredEvaluation]:
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
            StoredEvaluation(id_, e.agent_id, e.run_id, e.environment, e.region, e.reward,
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
        stored = [StoredEvaluation(*row) for row in session.execute(statement, values)]
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


def _copy_in(session: Session, stored: list[StoredEvaluation]) -> None:
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


def evaluation_page_query(where: EvaluationFilter, *, limit: int, cursor: str | None = None) -> Select[Any]:
    """One page of evaluations, newest first, from after ``cursor``: plain rows, not ORM objects (a
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
    if where.since is not None:
        query = query.where(EvaluationRow.created_at >= where.since)
    if where.until is not None:
        query = query.where(EvaluationRow.created_at < where.until)
    if cursor is not None:
        after_time, after_id = decode_cursor(cursor)
        query = query.where(
            or_(
                EvaluationRow.created_at < after_time,
                and_(EvaluationRow.created_at == after_time, EvaluationRow.id < after_id),
            )
        )
    return query.order_by(EvaluationRow.created_at.desc(), EvaluationRow.id.desc()).limit(limit + 1)


def evaluation_page(rows: Sequence[Row[Any]], limit: int) -> EvaluationPage:
    items = list(rows[:limit])
    next_cursor = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit and items else None
    return EvaluationPage(items=items, next_cursor=next_cursor)


def list_evaluations(
    session: Session, where: EvaluationFilter, *, limit: int, cursor: str | None = None
) -> EvaluationPage:
    return evaluation_page(session.execute(evaluation_page_query(where, limit=limit, cursor=cursor)).all(), limit)


async def list_evaluations_async(
    engine: AsyncEngine, where: EvaluationFilter, *, limit: int, cursor: str | None = None
) -> EvaluationPage:
    """The same page through an asyncio engine: no thread hop, for the API on PostgreSQL."""
    query = evaluation_page_query(where, limit=limit, cursor=cursor)
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return evaluation_page(rows, limit)


def encode_cursor(created_at: datetime, row_id: int) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id = base64.urlsafe_b64decode(padded.encode()).decode().split("|")
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("cursor time has no zone")
        if not 0 < int(row_id) < 2**63:
            raise ValueError("cursor id out of range")
        # Out of range in UTC (OverflowError), it could not be compared with the stored times.
        return moment.astimezone(UTC), int(row_id)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidField("cursor", "not a cursor this API returned", location="query") from exc


def get_evaluation(session: Session, evaluation_id: int) -> EvaluationRow:
    row = session.get(EvaluationRow, evaluation_id)
    if row is None:
        raise NotFound("evaluation", evaluation_id)
    return row


def delete_evaluation(session: Session, row: EvaluationRow) -> None:
    hours = rollups.hours_of([row])
    session.delete(row)
    session.flush()
    rollups.recompute(session, hours)


def delete_run_evaluations(session: Session, run_id: str) -> None:
    """A run's evaluations, gone with an attempt that starts over; their hours summed again."""
    stored = list(session.scalars(select(EvaluationRow).where(EvaluationRow.run_id == run_id)))
    if not stored:
        return
    session.execute(delete(EvaluationRow).where(EvaluationRow.run_id == run_id))
    rollups.recompute(session, rollups.hours_of(stored))
