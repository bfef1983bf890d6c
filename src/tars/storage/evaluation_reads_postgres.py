"""Pages of evaluations on PostgreSQL through one asyncpg pool: the hottest read, on the event loop.

Dashboards and clients poll the list more than anything else; asyncpg's protocol costs a fraction of
a general-purpose driver's, and each connection prepares a statement once per filter combination and
keeps it. The pool belongs to the event loop that opened it, so it is opened by the process serving
the list (`start`), not when the runtime is built; each loop that starts the reader has its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from tars.domain.errors import InvalidField, Unavailable
from tars.domain.evaluations import EVALUATION_FIELDS, EvaluationFields, EvaluationFilter, Position
from tars.settings import PoolSettings

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


class PostgresEvaluationReader:
    def __init__(self, url: str, pool: PoolSettings) -> None:
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._settings = pool
        self._pools: dict[asyncio.AbstractEventLoop, tuple[asyncpg.Pool, int]] = {}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if loop in self._pools:
            pool, users = self._pools[loop]
            self._pools[loop] = (pool, users + 1)
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
        self._pools[loop] = (pool, 1)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if loop not in self._pools:
            return
        pool, users = self._pools.pop(loop)
        if users > 1:
            self._pools[loop] = (pool, users - 1)
        else:
            await pool.close()

    async def page(self, where: EvaluationFilter, *, limit: int, after: Position | None) -> list[EvaluationFields]:
        try:
            pool = self._pools[asyncio.get_running_loop()][0]
        except KeyError:
            raise RuntimeError("the evaluation reader was not started on this event loop") from None
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


def _discard(connection: Any) -> None:
    """Close a connection PostgreSQL dropped, unless asyncpg, seeing it close, already released it."""
    with contextlib.suppress(asyncpg.exceptions.InterfaceError):
        connection.terminate()


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """What a released connection needs reset beyond asyncpg's own (listeners dropped, an open
    transaction rolled back): nothing. These connections only ever run one SELECT at a time — no SET,
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
