"""Evaluations on PostgreSQL through one asyncpg pool, on the event loop: the hottest read (pages of
the list) and ingest (single submissions grouped, and batches).

Dashboards and clients poll the list more than anything else; asyncpg's protocol costs a fraction of
a general-purpose driver's, and each connection prepares a statement once per filter combination and
keeps it. Evaluations are stored by one statement (see ``_INSERT``). The pool belongs to the event
loop that opened it, so it is opened by the process serving the API (`start`), not when the runtime
is built; each loop that starts the store has its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from operator import attrgetter
from typing import Any, TypeVar, cast

import asyncpg
from sqlalchemy import BigInteger, DateTime, Float, Integer, Text, any_, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.dialects.postgresql import insert as upsert
from sqlalchemy.engine import make_url

from tars.domain.errors import InvalidField, Unavailable
from tars.domain.evaluations import (
    EVALUATION_FIELDS,
    Evaluation,
    EvaluationFields,
    EvaluationFilter,
    NewEvaluation,
    Position,
)
from tars.settings import PoolSettings
from tars.storage import rollups
from tars.storage.tables import AgentRow, EvaluationRow, evaluation_rollups

_FILTERS = ("agent_id", "environment", "region", "run_id")
_SELECT = f"SELECT {', '.join(EVALUATION_FIELDS)} FROM evaluations"
# A connection PostgreSQL ended (a restart, an outage): the pool replaces it, the read is tried once more.
_LOST = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    # A connection caught mid-operation by the server closing it can be left in a state it refuses.
    asyncpg.exceptions.InternalClientError,
    ConnectionError,
)
UNAVAILABLE = "the database is unavailable; try again shortly"
_T = TypeVar("_T")


_STORED = [name for name in EVALUATION_FIELDS if name != "id"]
_ARRAY_TYPES: dict[str, Any] = {
    "reward": Float(),
    "episode_length": Integer(),
    "duration_ms": Float(),
    "created_at": DateTime(timezone=True),
    "bucket": DateTime(timezone=True),
}
_ROLLUP = "rollup_"  # the prefix of the rollup arrays' parameters
_IN_TABLE_ORDER = attrgetter(*_STORED)


def _arrays(names: Sequence[str], prefix: str = "") -> Any:
    """Parameters, one array per column, as rows (``unnest``), keeping their order as ``ord``."""
    arrays = []
    for name in names:
        kind = _ARRAY_TYPES.get(name) or (Text() if name in _TEXT else Float() if "sum" in name else BigInteger())
        arrays.append(bindparam(prefix + name, type_=ARRAY(kind)))
    return func.unnest(*arrays).table_valued(*names, with_ordinality="ord").render_derived(f"{prefix}arrays")


_TEXT = {"agent_id", "run_id", "environment", "region", "status"}


def _insert_statement(*, all_or_nothing: bool) -> tuple[str, list[str], dict[str, Any]]:
    """One statement storing evaluations given as one array per column, and adding rollup rows
    given the same way (`rollups.rollup_rows`) to their hours: its SQL, the order of its parameters,
    and the values of those that are constants of the SQL (SQLAlchemy binds them too). It answers
    the stored evaluations' ids and agents, in the order given.

    Only evaluations of known agents go in (``all_or_nothing``: none at all unless every agent is
    known), and only the rollup rows of agents whose evaluations went in (an agent is known for all
    its evaluations or none). One statement is atomic without BEGIN and COMMIT around it (two round
    trips fewer), and its rollup rows are locked only while it runs.
    """
    given = select(_arrays(_STORED)).cte("given")
    known = select(AgentRow.agent_id)
    chosen = select(*(given.c[name] for name in _STORED)).where(given.c.agent_id.in_(known)).order_by(given.c.ord)
    if all_or_nothing:
        # Every distinct agent given is known: a few lookups, where a second pass over the rows cost a quarter.
        agents = bindparam("distinct_agents", type_=ARRAY(Text()))
        found = select(func.count()).where(AgentRow.agent_id == any_(agents)).scalar_subquery()
        chosen = chosen.where(found == func.cardinality(agents))
    table = EvaluationRow.__table__
    inserted = (
        insert(EvaluationRow).from_select(_STORED, chosen).returning(table.c.id, table.c.agent_id).cte("inserted")
    )
    totals = _arrays(rollups.COLUMNS, _ROLLUP)
    adding = rollups.adding_on_conflict(
        upsert(evaluation_rollups).from_select(
            rollups.COLUMNS,
            select(*(totals.c[name] for name in rollups.COLUMNS))
            .where(totals.c.agent_id.in_(select(inserted.c.agent_id)))
            .order_by(totals.c.ord),
        ),
        "postgresql",
    ).cte("rolled")
    statement = select(inserted.c.id, inserted.c.agent_id).add_cte(adding).order_by(inserted.c.id)
    compiled = statement.compile(dialect=asyncpg_dialect.dialect())  # type: ignore[no-untyped-call]
    return str(compiled), list(compiled.positiontup or []), dict(compiled.params)


_INSERT = {choice: _insert_statement(all_or_nothing=choice) for choice in (False, True)}


def _rollup_statement() -> tuple[str, list[str], dict[str, Any]]:
    """The rollup rows given as one array per column, added to their hours in key order."""
    totals = _arrays(rollups.COLUMNS, _ROLLUP)
    statement = rollups.adding_on_conflict(
        upsert(evaluation_rollups).from_select(
            rollups.COLUMNS, select(*(totals.c[name] for name in rollups.COLUMNS)).order_by(totals.c.ord)
        ),
        "postgresql",
    )
    compiled = statement.compile(dialect=asyncpg_dialect.dialect())  # type: ignore[no-untyped-call]
    return str(compiled), list(compiled.positiontup or []), dict(compiled.params)


_ADD_ROLLUPS = _rollup_statement()
# A whole batch of at least this many goes in by binary COPY: the INSERT … SELECT FROM unnest took
# half again as long per row for a 1,000-item batch.
COPY_FROM = 50
# Batches copied at once per process: PostgreSQL took a sixth more CPU per row with four COPYs into
# the table at once than with two (contention on the same index pages), and two keep it busy while
# the next batches are parsed.
COPY_CONCURRENCY = 2
# The order `_copy_in` unpacks a submission in.
assert NewEvaluation._fields == (
    "agent_id",
    "environment",
    "reward",
    "region",
    "episode_length",
    "duration_ms",
    "status",
    "run_id",
    "created_at",
)
# How many of the given agents are known, and ids for the rows, in one round trip.
# The sequence is named, not looked up: pg_get_serial_sequence is evaluated for every row, which cost
# PostgreSQL 2.3 µs of each evaluation's ~12 (tests/storage holds the name to the schema).
EVALUATION_IDS = "evaluations_id_seq"
_AGENTS_AND_IDS = (
    "SELECT (SELECT count(*) FROM agents WHERE agent_id = ANY($1::text[])), "
    f"(SELECT array_agg(nextval('{EVALUATION_IDS}'::regclass)) FROM generate_series(1, $2))"
)


class PostgresEvaluationStore:
    def __init__(self, url: str, pool: PoolSettings) -> None:
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._settings = pool
        self._pools: dict[asyncio.AbstractEventLoop, _LoopPool] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if loop in self._pools:
            self._pools[loop].users += 1
            return
        timeout = self._settings.statement_timeout_ms
        pool = await asyncpg.create_pool(
            self._dsn,
            min_size=0,  # connects on first use: a dashboard starting while PostgreSQL is down still starts
            max_size=self._settings.size,
            timeout=5,
            server_settings={"statement_timeout": str(timeout)} if timeout else {},
            reset=_keep_session,
        )
        self._pools[loop] = _LoopPool(pool, asyncio.Semaphore(COPY_CONCURRENCY))

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if loop not in self._pools:
            return
        state = self._pools[loop]
        state.users -= 1
        if state.users == 0:
            del self._pools[loop]
            await state.pool.close()

    def _pool(self) -> asyncpg.Pool:
        return self._loop_pool().pool

    def _loop_pool(self) -> _LoopPool:
        try:
            return self._pools[asyncio.get_running_loop()]
        except KeyError:
            raise RuntimeError("the evaluation store was not started on this event loop") from None

    async def page(self, where: EvaluationFilter, *, limit: int, after: Position | None) -> list[EvaluationFields]:
        pool = self._pool()
        sql, parameters = _statement(where, limit, after)
        for attempt in (1, 2):
            connection = await _acquire(pool, self._settings.timeout)
            try:
                rows = await connection.fetch(sql, *parameters)
            except asyncpg.exceptions.QueryCanceledError as exc:
                raise Unavailable(
                    "the database took too long to answer (statement timeout); try a narrower query or again shortly"
                ) from exc
            except _LOST as exc:
                # One connection lost means PostgreSQL went away (a restart, an outage): every pooled
                # connection is as dead, and released without a reset query nothing else notices.
                # They are replaced at their next use; the read is tried once more on a new one.
                _discard(connection)
                await pool.expire_connections()
                if attempt == 2:
                    raise Unavailable(UNAVAILABLE) from exc
                continue
            finally:
                await pool.release(connection)
            # asyncpg gives timestamptz in UTC, as the sync reader does; its records are named by column
            return [dict(row) for row in rows]
        raise AssertionError("unreachable")

    async def insert(self, new: Sequence[NewEvaluation], now: datetime, *, all_or_nothing: bool) -> list[Evaluation]:
        if all_or_nothing and len(new) >= COPY_FROM:
            state = self._loop_pool()
            async with state.copying:
                return await self._storing(state.pool, partial(_copy_in, new=new, now=now))
        sql, order, constants = _INSERT[all_or_nothing]
        evaluations = [item._replace(created_at=item.created_at or now) for item in new]
        fields = list(map(_IN_TABLE_ORDER, evaluations))  # each as a stored Evaluation's, but its id
        values: dict[str, Any] = dict(constants)
        values["distinct_agents"] = list({item.agent_id for item in new})
        values.update(zip(_STORED, map(list, zip(*fields, strict=True)), strict=True))
        values.update(_rollup_arrays(cast("list[rollups.Evaluation]", evaluations)))
        stored = await self._storing(self._pool(), partial(_fetch, sql=sql, arguments=[values[name] for name in order]))
        known = {row[1] for row in stored}
        ids = iter(row[0] for row in stored)
        return [Evaluation(next(ids), *item) for item in fields if item[0] in known]

    async def _storing(self, pool: asyncpg.Pool, store: Callable[[Any], Awaitable[_T]]) -> _T:
        """``store`` run on a pooled connection, its failures told as the service tells them."""
        connection = await _acquire(pool, self._settings.timeout)
        try:
            return await store(connection)
        except asyncpg.exceptions.QueryCanceledError as exc:
            raise Unavailable("the database took too long to store the evaluations; try again shortly") from exc
        except asyncpg.exceptions.DataError as exc:  # a value the schema let through that the column cannot hold
            raise InvalidField("evaluations", f"a value cannot be stored: {exc}") from exc
        except _LOST as exc:
            # Not tried again: whether the statement committed before the connection went is unknown.
            _discard(connection)
            await pool.expire_connections()
            raise Unavailable(UNAVAILABLE) from exc
        finally:
            await pool.release(connection)

    async def known_agents(self, agent_ids: set[str]) -> set[str]:
        pool = self._pool()
        connection = await _acquire(pool, self._settings.timeout)
        try:
            found = await connection.fetch(
                "SELECT agent_id FROM agents WHERE agent_id = ANY($1::text[])", list(agent_ids)
            )
        finally:
            await pool.release(connection)
        return {row[0] for row in found}


async def _fetch(connection: Any, *, sql: str, arguments: list[Any]) -> list[Any]:
    return cast("list[Any]", await connection.fetch(sql, *arguments))


async def _copy_in(connection: Any, *, new: Sequence[NewEvaluation], now: datetime) -> list[Evaluation]:
    """All of a batch or none, in one transaction: ids drawn first, the rows by binary COPY, then
    their rollups. Each row is made once, straight from what was submitted: per row, every
    intermediate record cost ingest a few percent."""
    agents = list({item.agent_id for item in new})
    make = Evaluation._make
    async with connection.transaction():
        known, ids = await connection.fetchrow(_AGENTS_AND_IDS, agents, len(new))
        if known < len(agents):
            return []
        stored = [
            make((id_, agent, run, environment, region, reward, length, duration, status, created or now))
            for id_, (agent, environment, reward, region, length, duration, status, run, created) in zip(
                ids, new, strict=True
            )
        ]
        await connection.copy_records_to_table("evaluations", records=stored, columns=EVALUATION_FIELDS)
        sql, order, constants = _ADD_ROLLUPS
        rolled = constants | _rollup_arrays(cast("list[rollups.Evaluation]", stored))
        await connection.execute(sql, *(rolled[name] for name in order))
    return stored


def _rollup_arrays(evaluations: list[rollups.Evaluation]) -> dict[str, list[Any]]:
    """The rollup rows of ``evaluations`` (`rollups.rollup_rows`) as one array per column."""
    arrays: dict[str, list[Any]] = {_ROLLUP + name: [] for name in rollups.COLUMNS}
    for row in rollups.rollup_rows(evaluations):
        for name in rollups.COLUMNS:
            arrays[_ROLLUP + name].append(row[name])
    return arrays


@dataclass
class _LoopPool:
    """What the store holds for one event loop: its pool, how many started it there, and the gate
    that lets at most `COPY_CONCURRENCY` batches COPY at once."""

    pool: asyncpg.Pool
    copying: asyncio.Semaphore
    users: int = 1


def _discard(connection: Any) -> None:
    """Close a connection PostgreSQL dropped, unless asyncpg, seeing it close, already released it."""
    with contextlib.suppress(asyncpg.exceptions.InterfaceError):
        connection.terminate()


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """What a released connection needs reset beyond asyncpg's own (listeners dropped, an open
    transaction rolled back): nothing. These connections only ever run one statement at a time — no SET,
    LISTEN, cursor or advisory lock — so the default RESET ALL would be a round trip per read for no
    change; their prepared statements are kept on purpose."""


async def _acquire(pool: asyncpg.Pool, timeout: float) -> Any:
    try:
        # asyncio.timeout, not acquire(timeout=...): that wraps the wait in a task of its own (wait_for),
        # which cost the list a twentieth of its throughput.
        async with asyncio.timeout(timeout):
            return await pool.acquire()
    except TimeoutError as exc:  # before OSError, whose kind it is
        raise Unavailable("every database connection is busy; try again shortly") from exc
    except (OSError, asyncpg.exceptions.PostgresError, asyncpg.exceptions.InterfaceError) as exc:
        raise Unavailable(UNAVAILABLE) from exc


def _statement(where: EvaluationFilter, limit: int, after: Position | None) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    parameters: list[Any] = []
    for name in _FILTERS:
        value = getattr(where, name)
        if value is not None:
            if "\x00" in value:  # PostgreSQL's text cannot hold it: the client's error, named
                raise InvalidField(
                    name, "a value cannot be stored or compared: text cannot contain NUL (0x00)", location="query"
                )
            parameters.append(value)
            conditions.append(f"{name} = ${len(parameters)}")
    for moment, operator in ((where.since, ">="), (where.until, "<")):
        if moment is not None:
            parameters.append(moment)
            conditions.append(f"created_at {operator} ${len(parameters)}")
    if after is not None:
        n = len(parameters)
        conditions.append(f"(created_at < ${n + 1} OR (created_at = ${n + 1} AND id < ${n + 2}))")
        parameters += [after.created_at, after.id]
    sql = _SELECT
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    parameters.append(limit + 1)
    return f"{sql} ORDER BY created_at DESC, id DESC LIMIT ${len(parameters)}", parameters
