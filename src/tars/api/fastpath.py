"""The hottest request, `GET /api/v1/evaluations`, answered without FastAPI's routing and SQLAlchemy.

Dashboards and clients poll this list more than anything else. Routing, dependency resolution,
SQLAlchemy's statement caching and result rows cost several times the query itself, so a plain
request — a cached credential, the usual filters — is answered here with one prepared statement
on an asyncpg pool of its own. Anything else (a filter by time, a value out of range, a
credential not cached yet, a time written otherwise than YYYY-MM-DDTHH:MM[:SS[.ffffff]]±HH:MM|Z,
the database away) goes on to the documented route, which stays the
one place that validates and explains errors: this path only ever answers what the route would.

It sits inside the rate limiter, the security headers and the request metrics, so those apply
as to every request.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from tars.api.deps import presented_credential
from tars.api.schemas import Region
from tars.domain.users import Principal, Role
from tars.services.auth import AuthenticationFailed
from tars.services.auth.credentials import Authenticator
from tars.storage.evaluations import EVALUATION_COLUMNS, decode_cursor, encode_cursor

PATH = "/api/v1/evaluations"
_FILTERS = ("agent_id", "environment", "region", "run_id")
_REGIONS = frozenset(Region.__args__)  # type: ignore[attr-defined]
_TIMES = ("since", "until")
_ISO_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})")
_DEFAULT_LIMIT, _MAX_LIMIT, _MAX_CURSOR = 100, 1000, 200


class _Route:
    """What the request metrics read of a matched route: its template."""

    path = PATH


class EvaluationListFastPath:
    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator
        self._route = _Route()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        pool = getattr(scope["app"].state, "read_pool", None) if "app" in scope else None
        query = _plain_query(scope["query_string"])
        principal = self._principal(scope) if pool is not None and query is not None else None
        if principal is None or not principal.role.allows(Role.VIEWER):
            await self.app(scope, receive, send)
            return
        assert query is not None
        try:
            body = await _page(pool, *query)
        except Exception:  # the database away, a value it refuses: the route answers that properly
            await self.app(scope, receive, send)
            return
        scope["route"] = self._route
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _principal(self, scope: Scope) -> Principal | None:
        known: Principal | None = scope.get("state", {}).get("principal")  # the rate limiter's
        if known is not None:
            return known
        credential = presented_credential(Request(scope))
        if not credential:
            return None
        try:
            return self.authenticator.cached(credential)
        except AuthenticationFailed:
            return None  # the route answers 401


def _plain_query(raw: bytes) -> tuple[dict[str, str], dict[str, datetime], int, str | None] | None:
    """(filters, times, limit, cursor) of a query the route would accept as it is, else None."""
    try:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError):
        return None
    filters: dict[str, str] = {}
    times: dict[str, datetime] = {}
    limit, cursor = _DEFAULT_LIMIT, None
    seen: set[str] = set()
    for name, value in pairs:
        if name in seen or "\x00" in value:
            return None
        seen.add(name)
        if name in _FILTERS:
            filters[name] = value
        elif name == "limit":
            if not value.isdigit() or not 1 <= int(value) <= _MAX_LIMIT:
                return None
            limit = int(value)
        elif name == "cursor":
            if len(value) > _MAX_CURSOR:
                return None
            cursor = value
        elif name in _TIMES:
            moment = _moment(value)
            if moment is None:
                return None
            times[name] = moment
        else:
            return None  # a parameter the route would refuse or treats otherwise
    if "region" in filters and filters["region"] not in _REGIONS:
        return None
    return filters, times, limit, cursor


def _moment(value: str) -> datetime | None:
    """An ISO 8601 time with its zone, in UTC; None for anything else (the route parses and explains)."""
    if not _ISO_MOMENT.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


async def _page(
    pool: Any, filters: dict[str, str], times: dict[str, datetime], limit: int, cursor: str | None
) -> bytes:
    conditions = [f"{name} = ${n}" for n, name in enumerate(filters, start=1)]
    params: list[Any] = list(filters.values())
    for name, moment in times.items():
        params.append(moment)
        conditions.append(f"created_at {'>=' if name == 'since' else '<'} ${len(params)}")
    if cursor is not None:
        after_time, after_id = decode_cursor(cursor)  # InvalidField: the route explains it
        n = len(params)
        conditions.append(f"(created_at < ${n + 1} OR (created_at = ${n + 1} AND id < ${n + 2}))")
        params += [after_time, after_id]
    sql = f"SELECT {', '.join(EVALUATION_COLUMNS)} FROM evaluations"
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    sql += f" ORDER BY created_at DESC, id DESC LIMIT ${len(params) + 1}"
    async with pool.acquire() as connection:  # statements are prepared and cached per connection
        rows = await connection.fetch(sql, *params, limit + 1)
    items = [dict(row) for row in rows[:limit]]  # asyncpg gives timestamptz in UTC, as the route does
    next_cursor = None
    if len(rows) > limit and items:
        next_cursor = encode_cursor(items[-1]["created_at"], items[-1]["id"])
    return orjson.dumps({"items": items, "next_cursor": next_cursor}, option=orjson.OPT_UTC_Z)
