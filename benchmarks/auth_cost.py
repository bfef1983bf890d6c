"""The server-side cost of authenticating one request, with 10,000 API keys stored on PostgreSQL.

Times what every request's authentication runs (``Authenticator.authenticate``: the rate limiter
asks it once and the route's dependency reuses the answer), on a distributed deployment: PostgreSQL
and Redis, with the Redis listener that drops revoked credentials subscribed.

    jwt:           an access token of a login session (signature, claims, user and session standing)
    api_key:       a random one of the 10,000 keys, each already seen by this replica
    api_key_cold:  the first use of a key on a replica (or any use with the cache off): a lookup by
                   prefix through its index on PostgreSQL
    baseline_argon2_key: in the same run, what a key stored under a slow password hash would cost
                   per request (one argon2 verification), the design that makes keys cost milliseconds

    .venv/bin/python benchmarks/auth_cost.py [--keys 10000] [--requests 20000]
    (--redis-url, default redis://127.0.0.1:6379/15, which is emptied first, --postgres-admin-url,
    default postgresql://postgres@127.0.0.1:5432/postgres, and --database-prefix, default tars_bench_;
    `make install` brings all it needs)
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from _harness import add_postgres_arguments, emit, postgres_database

from tars.domain.users import Role
from tars.services.auth import sessions as login_sessions
from tars.services.auth.apikeys import add_key as create_key
from tars.services.auth.passwords import hash_password, verify_password
from tars.services.auth.users import add_user as create_user
from tars.services.runtime import Runtime
from tars.settings import Settings
from tars.storage.database import transaction
from tars.wiring.runtime import build_runtime

DATABASE = "auth"
TARGET_P95_MS = 0.5


def timings_ms(calls: int, call: Callable[[int], object]) -> dict[str, float]:
    samples = []
    for n in range(calls):
        started = time.perf_counter_ns()
        call(n)
        samples.append((time.perf_counter_ns() - started) / 1e6)
    samples.sort()

    def at(q: float) -> float:
        return round(samples[min(len(samples) - 1, round(q / 100 * (len(samples) - 1)))], 4)

    return {"p50_ms": at(50), "p95_ms": at(95), "p99_ms": at(99), "requests": calls}


def seed(runtime: Runtime, keys: int) -> tuple[list[str], str]:
    """``keys`` API keys spread over 100 users, and one login session's access token."""
    made: list[str] = []
    with transaction(runtime.sessions) as session:
        owners = [create_user(session, f"machine-{n}", "benchmark password", Role.OPERATOR) for n in range(100)]
        admin = create_user(session, "admin", "benchmark password", Role.ADMIN)
    for start in range(0, keys, 1000):
        with transaction(runtime.sessions) as session:
            for n in range(start, min(keys, start + 1000)):
                owner = owners[n % len(owners)]
                made.append(create_key(session, None, username=owner.username, role=Role.VIEWER).key)
    with transaction(runtime.sessions) as session:
        pair = login_sessions.start(
            session, runtime.security.tokens, runtime.security.logins.lifetimes, admin, "127.0.0.1"
        )
    return made, pair.access_token


def deployment(database_url: str, redis_url: str, data_dir: Path, **overrides: Any) -> Runtime:
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        jwt_secret="benchmark-secret-" + "x" * 40,
        log_level="WARNING",
        **overrides,
    )
    return build_runtime(settings, migrate_schema=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    add_postgres_arguments(parser)
    args = parser.parse_args()
    redis.Redis.from_url(args.redis_url).flushdb()
    rng = random.Random(0)
    with (
        postgres_database(args.postgres_admin_url, args.database_prefix + DATABASE) as database_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        runtime = deployment(database_url, args.redis_url, Path(tmp))
        cold = deployment(database_url, args.redis_url, Path(tmp), auth_cache_seconds=0)
        try:
            started = time.perf_counter()
            keys, token = seed(runtime, args.keys)
            seeding_s = time.perf_counter() - started
            authenticate = runtime.security.authenticator.authenticate
            for key in keys:  # this replica has seen every key once (and the listener is subscribed)
                authenticate(key)
            authenticate(token)
            order = [rng.randrange(len(keys)) for _ in range(args.requests)]
            results = {
                "jwt": timings_ms(args.requests, lambda _n: authenticate(token)),
                "api_key": timings_ms(args.requests, lambda n: authenticate(keys[order[n]])),
                "api_key_cold": timings_ms(
                    min(args.requests, 5000), lambda n: cold.security.authenticator.authenticate(keys[order[n]])
                ),
            }
            slow_hash = hash_password(keys[0])
            results["baseline_argon2_key"] = timings_ms(50, lambda _n: verify_password(slow_hash, keys[0]))
        finally:
            cold.close()
            runtime.close()
    emit(
        {
            "benchmark": "auth_cost",
            "keys_stored": args.keys,
            "database": "postgresql",
            "seeding_seconds": round(seeding_s, 1),
            **results,
            "target_p95_ms": TARGET_P95_MS,
            "meets_target": all(results[name]["p95_ms"] < TARGET_P95_MS for name in ("jwt", "api_key")),
        }
    )


if __name__ == "__main__":
    main()
