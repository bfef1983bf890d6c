"""The evaluations API on PostgreSQL at a million evaluations: hot-query latency before and after the
v1.0.1 indexes, read throughput at saturation, and ingest rate — each beside a floor measured in the
same run.

A real `tars serve dashboard-api` process (PostgreSQL, Redis, rate limiting off) on a fresh PostgreSQL
database filled server-side (one INSERT ... SELECT FROM generate_series) with N evaluations: agents
dqn/a2c/ppo/ddpg x regions us-west-2/us-east-1/eu-west-1/ap-southeast-1, CartPole-v1, over 30 days.

    latency: the hot queries of GET /api/v1/evaluations (latest; agent; agent and region; region over
        the last 24 h; the second page of the latest through its next_cursor), each at a FIXED offered
        load (default 200 requests/s for 20 s), open loop: every request has its scheduled send time
        and its latency runs from that time to the whole response, so time spent queued behind a slow
        request (coordinated omission) is counted. Clients: aiohttp in this process, at most 64
        connections in flight. A request still unanswered `--grace` seconds after the last was
        scheduled is abandoned and counted at its age then: such percentiles are lower bounds (the
        result says so). Answers other than 200 are counted by kind (the service's own limits, a
        10 s wait for a pooled connection and a 5 s statement timeout, answer 503), beside what the
        service logged. Measured BEFORE and AFTER the v1.0.1 index migration (0004), side by side:
          before: the schema is migrated to head (services refuse an out-of-date one), filled and
            analysed, and every index the 0004 migration builds is dropped, which leaves evaluations
            with v1.0.0's indexes (its primary key only; checked) under later migrations' tables.
          after: the service is stopped and the migration run for real, the way an operator would
            redo it: migrate.downgrade("0003_security") (0004's downgrade drops its indexes IF EXISTS,
            later migrations are undone with it) then migrate.upgrade() to head, which builds the
            indexes with CREATE INDEX CONCURRENTLY over the N rows (checked valid) and redoes the later
            migrations (their time, e.g. a backfill over the N rows, is in the reported total).
            The service is started again and warmed before measuring.
        Floor, in each phase: the very SQL the app sends for each query (captured from the app's
        own query code with its parameters) run with psycopg (async, 20 connections like the app's
        pool) at the same rate and timed the same way. Target: API p95 < 10 ms after.
    throughput: saturation throughput of GET /api/v1/evaluations?agent_id=ppo&region=eu-west-1&limit=50
        with `wrk` (-t2, 32 connections, keep-alive, 15 s after a 3 s warm-up; wrk costs little CPU,
        but shares the machine's cores with the server), against the real dashboard-api (bearer token)
        and against a floor: a minimal Starlette + asyncpg endpoint defined in this file (no auth, no
        ORM, no validation) run as its own uvicorn process, same query, same JSON shape, once encoded
        with stdlib json and once with orjson. Target: ours >= 0.8 x the orjson floor.
    ingest: evaluations stored per second through the API (table already holding N evaluations, all
        v1.0.1 indexes): single POST /api/v1/evaluations with 32 concurrent wrk connections, and
        POST /api/v1/evaluations/batch with 1000 items a request and 4 connections (if that endpoint
        answers 404/405 the result says it is not available and only single is measured); rates are
        the 2xx responses wrk counted times the items each stored, cross-checked against the rows
        PostgreSQL gained (which also holds the requests still in flight when wrk stopped). Floors:
        psycopg executemany (pipelined, RETURNING id) and COPY, and raw asyncpg executemany and
        copy_records_to_table, into the same table, 1000 rows a transaction, one connection.
        Peer: an MLflow tracking server (one worker, its own fresh PostgreSQL database) taking
        MlflowClient.log_batch calls of 1000 metrics from 4 threads of this process, metrics/s.
        Single POST floor: a minimal Starlette + asyncpg endpoint (pydantic validation of the bytes, one
        INSERT … RETURNING, the row as JSON; no auth, agent check, rollup or event), its own uvicorn
        process, loaded by wrk exactly as the API was.
        Each of these phases starts with the database idle and just checkpointed (see `settle`).
        Targets: batched >= 0.8 x the faster one-connection COPY floor; single >= 0.5 x its floor.

    The seed runs on a connection of its own without a statement timeout (setup, not measured); the
    measured service keeps its 5 s one.

    make bench-install     # once: the bench extra (aiohttp, mlflow) and Debian's wrk
    .venv/bin/python benchmarks/evaluations_api.py latency [--evaluations 1000000] [--rate 200] [--seconds 20]
    .venv/bin/python benchmarks/evaluations_api.py throughput [--evaluations 1000000] [--connections 32]
    .venv/bin/python benchmarks/evaluations_api.py ingest [--evaluations 1000000] [--clients 32] [--seconds 15]
    (all take --redis-url, default redis://127.0.0.1:6379/15, which is emptied first,
    --postgres-admin-url, default postgresql://postgres@127.0.0.1:5432/postgres, and --database-prefix,
    default tars_bench_. What is missing is reported, not fatal: latency without aiohttp and throughput
    without wrk answer available false with the reason; ingest without wrk still measures its floors,
    and a missing or failing MLflow peer is reported unavailable beside the rest.)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
import redis
from _harness import (
    add_postgres_arguments,
    emit,
    free_port,
    missing_command,
    missing_module,
    plain_url,
    postgres_database,
    seed_evaluations,
    unavailable,
)
from live_feed import Dashboard, summary
from sqlalchemy import Engine, event

from tars.domain.evaluations import EvaluationFilter, Position, encode_cursor
from tars.domain.users import Role
from tars.services.auth.users import add_user as create_user
from tars.storage import evaluations, migrate
from tars.storage.database import make_engine, make_session_factory, transaction

DATABASE = "evaluations_api"
MLFLOW_DATABASE = "evaluations_mlflow"
BEFORE_INDEXES = "0003_security"
V1_0_1_INDEXES = "0004_v1_0_1_indexes"
USERNAME = "bench"
PASSWORD = "bench-password-long-enough"
PAGE = 50
IN_FLIGHT = 64  # client connections at most; a request waiting for one is still timed from its schedule
SQL_CONNECTIONS = 20  # the app's pool: pool_size 10 + max_overflow 10
TARGET_LATENCY_P95_MS = 10.0
TARGET_THROUGHPUT_RATIO = 0.8
# Ingest, against floors measured in the same run (absolute rates swing between machines).
TARGET_BATCH_RATIO = 0.8
TARGET_SINGLE_RATIO = 0.5

SEED = """
INSERT INTO evaluations (agent_id, environment, region, reward, duration_ms, status, created_at)
SELECT (ARRAY['dqn', 'a2c', 'ppo', 'ddpg'])[1 + n %% 4], 'CartPole-v1',
       (ARRAY['us-west-2', 'us-east-1', 'eu-west-1', 'ap-southeast-1'])[1 + (n / 4) %% 4],
       (n %% 500)::float, 5 + (n %% 97)::float / 2, 'completed',
       now() - n * (interval '30 days' / %(rows)s)
FROM generate_series(1, %(rows)s) AS n
"""

EVALUATION = {
    "agent_id": "ppo",
    "environment": "CartPole-v1",
    "reward": 1.0,
    "region": "eu-west-1",
    "duration_ms": 12.5,
}


# --- the deployment ---------------------------------------------------------------------------------


def add_user(engine: Engine) -> None:
    with transaction(make_session_factory(engine)) as session:
        create_user(session, USERNAME, PASSWORD, Role.ADMIN)


def prepare_database(database_url: str, rows: int) -> float:
    """The schema at head, ``rows`` evaluations and the benchmark's user; returns the seeding seconds."""
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        seeded = seed_evaluations(database_url, SEED, {"rows": rows})
        add_user(engine)
    finally:
        engine.dispose()
    return seeded


def drop_v1_0_1_indexes(database_url: str) -> list[str]:
    """Back to v1.0.0's indexes under a current schema: every index the 0004 migration builds, dropped."""
    specs = importlib.import_module(f"tars.storage.migrations.versions.{V1_0_1_INDEXES}").INDEXES
    with psycopg.connect(plain_url(database_url), autocommit=True) as connection:
        for spec in specs:
            connection.execute(f"DROP INDEX IF EXISTS {spec.name}")
        left = connection.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'evaluations' ORDER BY indexname"
        ).fetchall()
    assert [name for (name,) in left] == ["pk_evaluations"], left
    return [spec.name for spec in specs]


@contextmanager
def dashboard_api(redis_url: str, database_url: str) -> Iterator[Dashboard]:
    """A `tars serve dashboard-api` process on the database (started by the caller, stopped here)."""
    redis.Redis.from_url(redis_url).flushdb()
    with tempfile.TemporaryDirectory(prefix="tars-bench-evaluations-") as folder:
        env = os.environ | {
            "TARS_DATA_DIR": folder,
            "TARS_DATABASE_URL": database_url,
            "TARS_REDIS_URL": redis_url,
            "TARS_JWT_SECRET": "bench-" + os.urandom(24).hex(),
            "TARS_JWT_EXPIRES_SECONDS": "3600",
            "TARS_RATE_LIMIT_ENABLED": "false",
            "TARS_LOG_LEVEL": "WARNING",
        }
        dashboard = Dashboard(env, free_port(), Path(folder) / "dashboard-api.log")
        try:
            yield dashboard
        finally:
            dashboard.stop(kill=False)


def base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def login(port: int) -> str:
    response = httpx.post(
        f"{base_url(port)}/api/v1/auth/login", json={"username": USERNAME, "password": PASSWORD}, timeout=30
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def wait_database_idle(database_url: str, timeout: float = 120) -> None:
    """Until no other session of the database runs a statement (what an abandoned load left behind)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    with psycopg.connect(plain_url(database_url), autocommit=True) as connection:
        while quiet < 3 and time.monotonic() < deadline:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'active' AND pid <> pg_backend_pid()"
            ).fetchone()
            quiet = quiet + 1 if row is not None and row[0] == 0 else 0
            time.sleep(0.1)


@contextmanager
def process(command: list[str], log_path: Path, health_url: str, env: dict[str, str] | None = None) -> Iterator[None]:
    """A server process, up once ``health_url`` answers 200; stopped (SIGTERM, then SIGKILL) after."""
    with open(log_path, "ab") as log:
        started = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(health_url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if started.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[:3]} did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        yield
    finally:
        if started.poll() is None:
            started.send_signal(signal.SIGTERM)
            try:
                started.wait(30)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait(10)


# --- latency: open loop -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HotQuery:
    name: str
    where: EvaluationFilter
    params: dict[str, str]
    cursor_of: str | None = None  # a second page: after the first page of that query


def hot_queries(since: datetime) -> list[HotQuery]:
    return [
        HotQuery("latest", EvaluationFilter(), {}),
        HotQuery("agent", EvaluationFilter(agent_id="ppo"), {"agent_id": "ppo"}),
        HotQuery(
            "agent_region",
            EvaluationFilter(agent_id="ppo", region="eu-west-1"),
            {"agent_id": "ppo", "region": "eu-west-1"},
        ),
        HotQuery(
            "region_last_24h",
            EvaluationFilter(region="eu-west-1", since=since),
            {"region": "eu-west-1", "since": since.isoformat()},
        ),
        HotQuery("latest_page_2", EvaluationFilter(), {}, cursor_of="latest"),
    ]


def app_sql(engine: Engine, where: EvaluationFilter, cursor: str | None) -> tuple[str, dict[str, Any]]:
    """The SELECT the app's own query code sends for this filter, with its parameters."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with make_session_factory(engine)() as session:
            evaluations.list_evaluations(session, where, limit=PAGE, cursor=cursor)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    statement, parameters = captured[-1]
    return statement, dict(parameters)


async def open_loop(
    call: Callable[[], Awaitable[str | None]], rate: float, seconds: float, grace: float
) -> dict[str, Any]:
    """``call`` (None, or what went wrong) started at fixed times, ``rate`` a second for ``seconds``;
    each timed from its schedule."""
    loop = asyncio.get_running_loop()
    count = max(1, round(rate * seconds))
    start = loop.time() + 0.05
    schedule = [start + i / rate for i in range(count)]
    latencies: list[float | None] = [None] * count
    errors: Counter[str] = Counter()
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int) -> None:
        try:
            error = await call()
        except Exception as exc:
            error = type(exc).__name__
        if error is not None:
            errors[error] += 1
        latencies[index] = (loop.time() - schedule[index]) * 1000

    for index, at in enumerate(schedule):
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(index))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(set(tasks), timeout=max(0.0, schedule[-1] + grace - loop.time()))
    abandoned_at = loop.time()
    for task in list(tasks):
        task.cancel()
    if tasks:
        await asyncio.wait(set(tasks))
    unfinished = sum(1 for value in latencies if value is None)
    timed = [value if value is not None else (abandoned_at - schedule[i]) * 1000 for i, value in enumerate(latencies)]
    result: dict[str, Any] = {
        "latency_ms": summary(timed),
        "scheduled": count,
        "answered": count - unfinished,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "unfinished": unfinished,
    }
    if unfinished:
        result["note"] = (
            f"could not keep up with {rate:g}/s: {unfinished} requests abandoned {grace:g} s after the last "
            "was scheduled and counted at their age then, so these percentiles are lower bounds"
        )
    return result


async def measure_api(
    port: int, token: str, queries: list[HotQuery], cursors: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    import aiohttp
    from yarl import URL

    results: dict[str, Any] = {}
    for query in queries:
        params = dict(query.params, limit=str(PAGE))
        if query.cursor_of is not None:
            params["cursor"] = cursors[query.cursor_of]
        url = URL(f"{base_url(port)}/api/v1/evaluations?{urlencode(params)}", encoded=True)
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
        async with aiohttp.ClientSession(
            connector=connector, headers={"Authorization": f"Bearer {token}"}, timeout=aiohttp.ClientTimeout(None)
        ) as client:

            async def call(client: aiohttp.ClientSession = client, url: URL = url) -> str | None:
                async with client.get(url) as response:
                    await response.read()
                    return None if response.status == 200 else f"HTTP {response.status}"

            for _ in range(args.warmup):
                if await call() is not None:
                    raise RuntimeError(f"GET {url} failed")
            results[query.name] = {
                "path": str(url.relative()),
                **await open_loop(call, args.rate, args.seconds, args.grace),
            }
        await asyncio.to_thread(wait_database_idle, args.database_url)
    return results


async def measure_sql(
    database_url: str, statements: dict[str, tuple[str, dict[str, Any]]], args: argparse.Namespace
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, (statement, parameters) in statements.items():
        connections = [
            await psycopg.AsyncConnection.connect(plain_url(database_url), autocommit=True)
            for _ in range(SQL_CONNECTIONS)
        ]
        idle: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
        for connection in connections:
            idle.put_nowait(connection)

        async def call(
            statement: str = statement,
            parameters: dict[str, Any] = parameters,
            idle: asyncio.Queue[psycopg.AsyncConnection[Any]] = idle,
        ) -> str | None:
            connection = await idle.get()
            try:
                cursor = await connection.execute(statement, parameters)
                await cursor.fetchall()
                return None
            finally:
                idle.put_nowait(connection)

        try:
            for _ in range(args.warmup):
                await call()
            results[name] = await open_loop(call, args.rate, args.seconds, args.grace)
        finally:
            for connection in connections:
                await connection.close()
        await asyncio.to_thread(wait_database_idle, database_url)
    return results


def latency_phase(
    dashboard: Dashboard, engine: Engine, queries: list[HotQuery], args: argparse.Namespace
) -> dict[str, Any]:
    log_from = dashboard.log_path.stat().st_size if dashboard.log_path.exists() else 0
    dashboard.start()
    try:
        token = login(dashboard.port)
        cursors: dict[str, str] = {}
        for query in queries:
            if query.cursor_of is None:
                response = httpx.get(
                    f"{base_url(dashboard.port)}/api/v1/evaluations",
                    params=dict(query.params, limit=str(PAGE)),
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=120,
                )
                response.raise_for_status()
                cursors[query.name] = response.json()["next_cursor"]
        statements = {
            query.name: app_sql(engine, query.where, cursors[query.cursor_of] if query.cursor_of else None)
            for query in queries
        }
        api = asyncio.run(measure_api(dashboard.port, token, queries, cursors, args))
        sql = asyncio.run(measure_sql(args.database_url, statements, args))
    finally:
        dashboard.stop(kill=False)
    return {name: {"api": api[name], "sql_floor": sql[name]} for name in api} | {
        "server_log": server_log(dashboard.log_path, log_from)
    }


def server_log(path: Path, offset: int, lines: int = 5) -> list[str]:
    """The distinct lines the service logged since ``offset`` (it logs warnings and errors only), a few."""
    with open(path, "rb") as log:
        log.seek(offset)
        logged = log.read().decode(errors="replace").splitlines()
    return list(dict.fromkeys(line[:200] for line in logged if line.strip()))[:lines]


def side_by_side(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    queries = {}
    for name in after:
        before[name]["api"].pop("path")
        queries[name] = {"path": after[name]["api"].pop("path"), "before": before[name], "after": after[name]}
    return queries


def latency(args: argparse.Namespace) -> dict[str, Any]:
    reason = missing_module("aiohttp")  # the API's client: without it there is nothing to compare
    if reason is not None:
        return unavailable(reason, benchmark="evaluations_api_latency")
    since = datetime.now(UTC) - timedelta(hours=24)
    queries = hot_queries(since)
    with (
        postgres_database(args.postgres_admin_url, args.database_prefix + DATABASE) as database_url,
        dashboard_api(args.redis_url, database_url) as dashboard,
    ):
        args.database_url = database_url
        seeded = prepare_database(database_url, args.evaluations)
        engine = make_engine(database_url)
        try:
            dropped = drop_v1_0_1_indexes(database_url)
            before = latency_phase(dashboard, engine, queries, args)
            reported: list[str] = []
            started = time.monotonic()
            migrate.downgrade(engine, BEFORE_INDEXES)
            migrate.upgrade(engine, report=reported.append)
            migrated = time.monotonic() - started
            assert all(valid for _name, valid in migrate.index_states(engine)), migrate.index_states(engine)
            after = latency_phase(dashboard, engine, queries, args)
        finally:
            engine.dispose()
    logged = {"before": before.pop("server_log"), "after": after.pop("server_log")}
    worst_after = max(after[name]["api"]["latency_ms"]["p95"] for name in after)
    return {
        "benchmark": "evaluations_api_latency",
        "evaluations_in_postgresql": args.evaluations,
        "seconds_to_seed": round(seeded, 1),
        "offered_rate_per_second": args.rate,
        "seconds_per_query": args.seconds,
        "timing": "open loop: from each request's scheduled send time to its whole response",
        "client": f"aiohttp, <= {IN_FLIGHT} connections; floor: psycopg async, {SQL_CONNECTIONS} connections",
        "before": f"schema at head with the indexes of {V1_0_1_INDEXES} dropped: {', '.join(dropped)}",
        "after": f"migrate.downgrade({BEFORE_INDEXES!r}) then migrate.upgrade(): the migration builds them",
        "migration_seconds": round(migrated, 1),
        "migration_report": [line for line in reported if line.startswith("applied")],
        "queries": side_by_side(before, after),
        "dashboard_api_log": logged,
        "worst_api_p95_ms_after": worst_after,
        "target": {"api_p95_ms_after": f"< {TARGET_LATENCY_P95_MS:g}"},
        "meets_target": worst_after < TARGET_LATENCY_P95_MS,
    }


# --- throughput: wrk --------------------------------------------------------------------------------

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
    threads: int = 2,
) -> dict[str, Any]:
    command = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "60s"]
    command.append("--latency")
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+),", output)
    assert total is not None, output
    elapsed_s = float(total.group(2)) * UNITS_MS[total.group(3)] / 1000
    requests = int(total.group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    percentiles = {
        f"p{q}": round(float(value) * UNITS_MS[unit], 2)
        for q, value, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    }
    failed = int(non_2xx.group(1)) if non_2xx else 0
    return {
        "requests": requests,
        "seconds": round(elapsed_s, 2),
        "requests_per_second": round(requests / elapsed_s, 1),
        "ok_per_second": round((requests - failed) / elapsed_s, 1),
        "non_2xx": failed,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else None,
        "latency_ms": percentiles,
    }


FLOOR_SQL = (
    "SELECT id, agent_id, run_id, environment, region, reward, episode_length, duration_ms, status, created_at "
    "FROM evaluations WHERE agent_id = $1 AND region = $2 ORDER BY created_at DESC, id DESC LIMIT $3"
)


def floor_app(dsn: str, encoder: str) -> Any:
    """The least an endpoint can do for the query: asyncpg, a dict per row, one encode. No auth."""
    import asyncpg
    import orjson
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    pool: list[asyncpg.Pool] = []

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        pool.append(await asyncpg.create_pool(dsn, min_size=10, max_size=20))
        yield
        await pool[0].close()

    if encoder == "orjson":

        def encode(items: list[dict[str, Any]], cursor: str | None) -> bytes:
            return orjson.dumps({"items": items, "next_cursor": cursor}, option=orjson.OPT_UTC_Z)

    else:

        def encode(items: list[dict[str, Any]], cursor: str | None) -> bytes:
            for item in items:
                item["created_at"] = item["created_at"].isoformat().replace("+00:00", "Z")
            return json.dumps({"items": items, "next_cursor": cursor}, separators=(",", ":")).encode()

    async def list_evaluations(request: Request) -> Response:
        query = request.query_params
        limit = int(query.get("limit", "100"))
        rows = await pool[0].fetch(FLOOR_SQL, query["agent_id"], query["region"], limit + 1)
        items = [dict(row) for row in rows[:limit]]
        cursor = (
            encode_cursor(Position(rows[limit - 1]["created_at"], rows[limit - 1]["id"])) if len(rows) > limit else None
        )
        return Response(encode(items, cursor), media_type="application/json")

    async def health(_request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(
        routes=[Route("/api/v1/evaluations", list_evaluations), Route("/health", health)], lifespan=lifespan
    )


INGEST_FLOOR_SQL = (
    "INSERT INTO evaluations (agent_id, environment, region, reward, episode_length, duration_ms, status, created_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, 'completed', now()) "
    "RETURNING id, agent_id, run_id, environment, region, reward, episode_length, duration_ms, status, created_at"
)


def ingest_floor_app(dsn: str) -> Any:
    """The least an endpoint can do to take one evaluation: a pydantic model validating the bytes,
    one INSERT … RETURNING through asyncpg, the stored row as JSON. No auth, no agent check, no
    rollup, no event: what ours does beyond this is what the ratio measures."""
    import asyncpg
    import orjson
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    class Submitted(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        agent_id: str = Field(min_length=1, max_length=64)
        environment: str = Field(min_length=1, max_length=64)
        reward: float = Field(allow_inf_nan=False)
        region: str = "us-east-1"
        episode_length: int | None = Field(default=None, ge=0, lt=2**31)
        duration_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    pool: list[asyncpg.Pool] = []

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        pool.append(await asyncpg.create_pool(dsn, min_size=10, max_size=20))
        yield
        await pool[0].close()

    async def create(request: Request) -> Response:
        try:
            item = Submitted.model_validate_json(await request.body())
        except ValueError as exc:
            return Response(orjson.dumps({"detail": str(exc)}), status_code=422, media_type="application/json")
        row = await pool[0].fetchrow(
            INGEST_FLOOR_SQL,
            item.agent_id, item.environment, item.region, item.reward, item.episode_length, item.duration_ms,
        )  # fmt: skip
        return Response(
            orjson.dumps(dict(row), option=orjson.OPT_UTC_Z), status_code=201, media_type="application/json"
        )

    async def health(_request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(
        routes=[Route("/api/v1/evaluations", create, methods=["POST"]), Route("/health", health)], lifespan=lifespan
    )


def serve_floor(args: argparse.Namespace) -> None:
    import uvicorn

    app = ingest_floor_app(args.dsn) if args.encoder == "ingest" else floor_app(args.dsn, args.encoder)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", loop="uvloop", http="httptools")


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    reason = missing_command("wrk", "wrk")  # the load on the API and on its floor alike
    if reason is not None:
        return unavailable(reason, benchmark="evaluations_api_throughput")
    query = "/api/v1/evaluations?agent_id=ppo&region=eu-west-1&limit=50"
    results: dict[str, Any] = {}
    with (
        postgres_database(args.postgres_admin_url, args.database_prefix + DATABASE) as database_url,
        dashboard_api(args.redis_url, database_url) as dashboard,
        tempfile.TemporaryDirectory(prefix="tars-bench-floor-") as folder,
    ):
        seeded = prepare_database(database_url, args.evaluations)
        dashboard.start()
        token = login(dashboard.port)
        auth = {"Authorization": f"Bearer {token}"}
        ours = httpx.get(base_url(dashboard.port) + query, headers=auth, timeout=30).json()
        wrk(base_url(dashboard.port) + query, connections=args.connections, seconds=3, headers=auth)
        results["tars_dashboard_api"] = wrk(
            base_url(dashboard.port) + query, connections=args.connections, seconds=args.seconds, headers=auth
        )
        dashboard.stop(kill=False)
        for encoder in ("json", "orjson"):
            port = free_port()
            command = [sys.executable, __file__, "floor-server", "--port", str(port)]
            command += ["--dsn", plain_url(database_url), "--encoder", encoder]
            with process(command, Path(folder) / f"floor-{encoder}.log", base_url(port) + "/health"):
                theirs = httpx.get(base_url(port) + query, timeout=30).json()
                assert theirs == ours, "the floor must answer what the API answers"
                wrk(base_url(port) + query, connections=args.connections, seconds=3)
                results[f"floor_starlette_asyncpg_{encoder}"] = wrk(
                    base_url(port) + query, connections=args.connections, seconds=args.seconds
                )
    ratio = results["tars_dashboard_api"]["ok_per_second"] / results["floor_starlette_asyncpg_orjson"]["ok_per_second"]
    return {
        "benchmark": "evaluations_api_throughput",
        "evaluations_in_postgresql": args.evaluations,
        "seconds_to_seed": round(seeded, 1),
        "query": query,
        "load": f"wrk -t2 -c{args.connections} -d{args.seconds:g}s after a 3 s warm-up, on the same 2 cores",
        **results,
        "ratio_to_orjson_floor": round(ratio, 3),
        "target": {"ratio_to_orjson_floor": f">= {TARGET_THROUGHPUT_RATIO}"},
        "meets_target": ratio >= TARGET_THROUGHPUT_RATIO,
    }


# --- ingest -----------------------------------------------------------------------------------------


def post_script(folder: Path, name: str, token: str, body: str) -> Path:
    path = folder / f"{name}.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        f"wrk.body = [==[{body}]==]\n"
    )
    return path


def count_rows(database_url: str, table: str = "evaluations") -> int:
    with psycopg.connect(plain_url(database_url), autocommit=True) as connection:
        row = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert row is not None
        return int(row[0])


def settle(database_url: str) -> None:
    """Every ingest phase starts alike: nothing else running, and a fresh checkpoint. The writes after a
    checkpoint log whole pages, so a phase that a checkpoint happened to start in paid more per row than
    one that ran before it (the same COPY floor measured 68k and 94k rows/s in one run without this)."""
    wait_database_idle(database_url)
    with psycopg.connect(plain_url(database_url), autocommit=True) as connection:
        connection.execute("CHECKPOINT")


def ingest_through_api(url: str, database_url: str, script: Path, items: int, **load: Any) -> dict[str, Any]:
    settle(database_url)
    before = count_rows(database_url)
    result = wrk(url, script=script, **load)
    wait_database_idle(database_url)
    stored = count_rows(database_url) - before
    return {
        "evaluations_per_second": round(result["ok_per_second"] * items),
        "rows_stored": stored,
        "rows_expected_from_2xx": (result["requests"] - result["non_2xx"]) * items,
        **result,
    }


INSERT_ROW = (
    "INSERT INTO evaluations (agent_id, environment, region, reward, duration_ms, status, created_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id"
)
COPY_ROWS = "COPY evaluations (agent_id, environment, region, reward, duration_ms, status, created_at) FROM STDIN"


def floor_rows(count: int) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    row = (EVALUATION["agent_id"], EVALUATION["environment"], EVALUATION["region"], 1.0, 12.5, "completed", now)
    return [row] * count


def floor_executemany(database_url: str, rows: int, batch: int) -> dict[str, Any]:
    settle(database_url)
    ids = 0
    with psycopg.connect(plain_url(database_url)) as connection:
        started = time.monotonic()
        for start in range(0, rows, batch):
            with connection.transaction(), connection.cursor() as cursor:
                cursor.executemany(INSERT_ROW, floor_rows(min(batch, rows - start)), returning=True)
                while True:
                    ids += len(cursor.fetchall())
                    if not cursor.nextset():
                        break
        elapsed = time.monotonic() - started
    assert ids == rows
    return {"rows": rows, "rows_per_transaction": batch, "rows_per_second": round(rows / elapsed)}


def floor_copy(database_url: str, rows: int, batch: int) -> dict[str, Any]:
    settle(database_url)
    with psycopg.connect(plain_url(database_url)) as connection:
        started = time.monotonic()
        for start in range(0, rows, batch):
            with connection.transaction(), connection.cursor() as cursor, cursor.copy(COPY_ROWS) as copy:
                for row in floor_rows(min(batch, rows - start)):
                    copy.write_row(row)
        elapsed = time.monotonic() - started
    return {"rows": rows, "rows_per_transaction": batch, "rows_per_second": round(rows / elapsed)}


FLOOR_COLUMNS = ["agent_id", "environment", "region", "reward", "duration_ms", "status", "created_at"]


def floor_asyncpg(database_url: str, rows: int, batch: int, how: str) -> dict[str, Any]:
    """The issue's own floors: raw asyncpg, ``copy_records_to_table`` or ``executemany``."""
    import asyncpg

    insert = f"INSERT INTO evaluations ({', '.join(FLOOR_COLUMNS)}) VALUES ($1, $2, $3, $4, $5, $6, $7)"

    async def load() -> float:
        connection = await asyncpg.connect(plain_url(database_url))
        try:
            started = time.monotonic()
            for start in range(0, rows, batch):
                records = floor_rows(min(batch, rows - start))
                async with connection.transaction():
                    if how == "copy":
                        await connection.copy_records_to_table("evaluations", records=records, columns=FLOOR_COLUMNS)
                    else:
                        await connection.executemany(insert, records)
            return time.monotonic() - started
        finally:
            await connection.close()

    settle(database_url)
    elapsed = asyncio.run(load())
    return {"rows": rows, "rows_per_transaction": batch, "rows_per_second": round(rows / elapsed)}


def single_post_floor(args: argparse.Namespace, database_url: str, folder: Path) -> dict[str, Any]:
    """The single POST's floor, loaded as the API was (same wrk script shape, clients and seconds)."""
    port = free_port()
    command = [sys.executable, __file__, "floor-server", "--port", str(port)]
    command += ["--dsn", plain_url(database_url), "--encoder", "ingest"]
    with process(command, folder / "floor-ingest.log", base_url(port) + "/health"):
        url = base_url(port) + "/api/v1/evaluations"
        created = httpx.post(url, json=EVALUATION, timeout=30)
        assert created.status_code == 201, created.text
        script = post_script(folder, "single-floor", "none", json.dumps(EVALUATION))
        return {
            "endpoint": "Starlette + asyncpg: validate, INSERT … RETURNING, answer (no auth, rollup or event)",
            "clients": args.clients,
            **ingest_through_api(url, database_url, script, 1, connections=args.clients, seconds=args.seconds),
        }


def mlflow_peer(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    with postgres_database(args.postgres_admin_url, args.database_prefix + MLFLOW_DATABASE) as database_url:
        port = free_port()
        command = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--workers", "1", "--backend-store-uri", database_url]
        command += ["--default-artifact-root", (folder / "mlflow-artifacts").as_uri()]
        env = os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
        with process(command, folder / "mlflow.log", base_url(port) + "/health", env):
            client = MlflowClient(tracking_uri=base_url(port))
            experiment = client.create_experiment("bench")
            run_ids = [client.create_run(experiment).info.run_id for _ in range(args.batch_clients)]
            sent = [0] * args.batch_clients
            failures: list[str] = []
            stop = threading.Event()

            def log(index: int) -> None:
                stamp = int(time.time() * 1000)
                n = 0
                while not stop.is_set():
                    # Distinct (step, timestamp): MLflow's metrics key takes them in, and repeats are merged.
                    metrics = [
                        Metric("reward", float(j), stamp + n, n * args.batch_size + j) for j in range(args.batch_size)
                    ]
                    try:
                        client.log_batch(run_ids[index], metrics=metrics)
                    except Exception as exc:
                        failures.append(repr(exc)[:300])
                        return
                    sent[index] += len(metrics)
                    n += 1

            threads = [threading.Thread(target=log, args=(i,)) for i in range(args.batch_clients)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            time.sleep(args.seconds)
            stop.set()
            for thread in threads:
                thread.join(120)
            elapsed = time.monotonic() - started
            logged = sum(sent)
            stored = count_rows(database_url, "metrics")
    return {
        "server": f"mlflow server --workers 1, PostgreSQL backend (fresh database), mlflow {mlflow_version()}",
        "client": f"MlflowClient.log_batch, {args.batch_size} metrics a call, {args.batch_clients} threads",
        "metrics_per_second": round(logged / elapsed),
        "metrics_logged": logged,
        "metrics_rows_stored": stored,
        "seconds": round(elapsed, 2),
        "errors": failures[:3],
    }


def mlflow_version() -> str:
    from importlib.metadata import version

    return version("mlflow")


def ingest(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with (
        postgres_database(args.postgres_admin_url, args.database_prefix + DATABASE) as database_url,
        dashboard_api(args.redis_url, database_url) as dashboard,
        tempfile.TemporaryDirectory(prefix="tars-bench-ingest-") as tmp,
    ):
        folder = Path(tmp)
        seeded = prepare_database(database_url, args.evaluations)
        without_wrk = missing_command("wrk", "wrk")
        if without_wrk is None:
            results |= ingest_api(args, dashboard, database_url, folder)
        else:  # the floors and the peer need no wrk: they are still measured
            results["single"] = unavailable(without_wrk, endpoint="POST /api/v1/evaluations")
            results["batch"] = unavailable(without_wrk, endpoint="POST /api/v1/evaluations/batch")
        results["floor_psycopg_executemany"] = floor_executemany(database_url, args.floor_rows, args.batch_size)
        results["floor_psycopg_copy"] = floor_copy(database_url, args.floor_rows, args.batch_size)
        for how in ("executemany", "copy"):
            results[f"floor_asyncpg_{how}"] = floor_asyncpg(database_url, args.floor_rows, args.batch_size, how)
        try:
            results["peer_mlflow_log_batch"] = mlflow_peer(args, folder)
        except Exception as exc:
            # A peer that is missing or will not start must not cost the figures measured above.
            results["peer_mlflow_log_batch"] = unavailable(peer_failure(exc))
    batched = results["batch"].get("evaluations_per_second")
    single = results["single"].get("evaluations_per_second")
    # The faster of the two one-connection COPY floors: the ratio is against the best a client can do.
    copy_floor = max(results["floor_psycopg_copy"]["rows_per_second"], results["floor_asyncpg_copy"]["rows_per_second"])
    single_floor = results.get("floor_single_starlette_asyncpg", {}).get("evaluations_per_second")
    batch_ratio = None if batched is None else batched / copy_floor
    single_ratio = None if single is None or not single_floor else single / single_floor
    return {
        "benchmark": "evaluations_api_ingest",
        "evaluations_in_postgresql_before": args.evaluations,
        "seconds_to_seed": round(seeded, 1),
        "load": f"wrk -t2 for {args.seconds:g} s; floors: one connection, {args.batch_size} rows a transaction",
        **results,
        "batch_ratio_to_copy_floor": None if batch_ratio is None else round(batch_ratio, 3),
        "single_ratio_to_starlette_asyncpg_floor": None if single_ratio is None else round(single_ratio, 3),
        "target": {
            "batch_ratio_to_copy_floor": f">= {TARGET_BATCH_RATIO}",
            "single_ratio_to_starlette_asyncpg_floor": f">= {TARGET_SINGLE_RATIO}",
        },
        # None: not measured here (no wrk, or no batch endpoint), which is not the same as missing it.
        "meets_target": None
        if batch_ratio is None or single_ratio is None
        else batch_ratio >= TARGET_BATCH_RATIO and single_ratio >= TARGET_SINGLE_RATIO,
    }


def peer_failure(exc: Exception) -> str:
    if isinstance(exc, ImportError):
        return f"{exc}: `make bench-install`, or pip install -e '.[bench]'"
    return f"{type(exc).__name__}: {str(exc)[-500:]}"


def ingest_api(args: argparse.Namespace, dashboard: Dashboard, database_url: str, folder: Path) -> dict[str, Any]:
    """Single and batch POSTs through the running API, loaded by wrk; the service is stopped after."""
    results: dict[str, Any] = {}
    dashboard.start()
    try:
        token = login(dashboard.port)
        auth = {"Authorization": f"Bearer {token}"}
        url = base_url(dashboard.port) + "/api/v1/evaluations"
        single = post_script(folder, "single", token, json.dumps(EVALUATION))
        created = httpx.post(url, json=EVALUATION, headers=auth, timeout=30)
        assert created.status_code == 201, created.text
        results["single"] = {
            "endpoint": "POST /api/v1/evaluations",
            "clients": args.clients,
            **ingest_through_api(url, database_url, single, 1, connections=args.clients, seconds=args.seconds),
        }
        dashboard.stop(kill=False)
        results["floor_single_starlette_asyncpg"] = single_post_floor(args, database_url, folder)
        dashboard.start()
        token = login(dashboard.port)
        auth = {"Authorization": f"Bearer {token}"}
        url = base_url(dashboard.port) + "/api/v1/evaluations"
        batch_body = json.dumps({"items": [EVALUATION] * args.batch_size})
        probe = httpx.post(
            url + "/batch", content=batch_body, headers=auth | {"Content-Type": "application/json"}, timeout=120
        )
        if probe.status_code == 201 and probe.json().get("count") == args.batch_size:
            batch = post_script(folder, "batch", token, batch_body)
            results["batch"] = {
                "endpoint": "POST /api/v1/evaluations/batch",
                "items_per_request": args.batch_size,
                "clients": args.batch_clients,
                **ingest_through_api(
                    url + "/batch",
                    database_url,
                    batch,
                    args.batch_size,
                    connections=args.batch_clients,
                    seconds=args.seconds,
                ),
            }
        else:
            results["batch"] = {
                "endpoint": "POST /api/v1/evaluations/batch",
                "available": False,
                "status": probe.status_code,
                "answer": probe.text[:300],
            }
    finally:
        dashboard.stop(kill=False)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    add_postgres_arguments(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    timing = commands.add_parser("latency")
    timing.add_argument("--rate", type=float, default=200.0, help="requests/s offered, per query")
    timing.add_argument("--seconds", type=float, default=20.0, help="per query and phase")
    timing.add_argument("--grace", type=float, default=5.0, help="wait this long past the schedule's end")
    timing.add_argument("--warmup", type=int, default=20, help="sequential requests before each measurement")
    saturation = commands.add_parser("throughput")
    saturation.add_argument("--connections", type=int, default=32)
    saturation.add_argument("--seconds", type=float, default=15.0)
    storing = commands.add_parser("ingest")
    storing.add_argument("--clients", type=int, default=32, help="concurrent single POSTs")
    storing.add_argument("--batch-clients", type=int, default=4, help="concurrent batch POSTs and MLflow clients")
    storing.add_argument("--batch-size", type=int, default=1000)
    storing.add_argument("--seconds", type=float, default=15.0)
    storing.add_argument("--floor-rows", type=int, default=200_000)
    for command in (timing, saturation, storing):
        command.add_argument("--evaluations", type=int, default=1_000_000)
    floor = commands.add_parser("floor-server", help="(internal) the throughput floor, run by `throughput`")
    floor.add_argument("--dsn", required=True)
    floor.add_argument("--port", type=int, required=True)
    floor.add_argument(
        "--encoder", choices=("json", "orjson", "ingest"), required=True, help="ingest: the single-POST floor"
    )
    args = parser.parse_args()
    if args.command == "floor-server":
        serve_floor(args)
        return
    emit({"latency": latency, "throughput": throughput, "ingest": ingest}[args.command](args))


if __name__ == "__main__":
    main()
