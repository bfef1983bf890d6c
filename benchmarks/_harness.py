"""Shared pieces of the benchmarks: T.A.R.S. with one real worker process, memory sampling, fresh
PostgreSQL databases seeded outside the API's statement timeout, and how a missing program or module is
reported (unavailable, with the reason, in the JSON) instead of ending the run."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import redis

from tars.domain.runs import RunStatus
from tars.domain.users import Role
from tars.services.auth.apikeys import add_key as create_key
from tars.services.auth.users import add_user as create_user
from tars.services.runtime import Runtime
from tars.services.training import TrainingRequest, submit_training
from tars.settings import Settings
from tars.storage import runs
from tars.storage.database import transaction
from tars.wiring.runtime import build_runtime
from tars.worker.resources import process_tree_rss

MIB = 2**20


@dataclass
class WorkerStack:
    """A submitting runtime, the orchestration service and one real `tars worker` process."""

    runtime: Runtime
    worker: psutil.Process


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service at {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the service at {url} did not become healthy within {timeout} s")


@contextmanager
def worker_process(redis_url: str) -> Iterator[WorkerStack]:
    """T.A.R.S. as deployed with one `tars worker` process: Redis Streams, a shared SQLite file,
    the orchestration service the worker reports to (with an operator's API key).

    The Redis database given is emptied first: point it at one kept for benchmarks.
    """
    redis.Redis.from_url(redis_url).flushdb()
    with tempfile.TemporaryDirectory(prefix="tars-bench-") as data_dir:
        secret = secrets.token_urlsafe(48)
        settings = Settings(data_dir=Path(data_dir), jwt_secret=secret, redis_url=redis_url, log_level="WARNING")
        runtime = build_runtime(settings, migrate_schema=True)
        with transaction(runtime.sessions) as session:
            create_user(session, "bench-fleet", secrets.token_urlsafe(16), Role.OPERATOR)
            key = create_key(session, None, username="bench-fleet", role=Role.OPERATOR, name="bench").key
        port = free_port()
        environment = os.environ | {
            "TARS_DATA_DIR": data_dir,
            "TARS_JWT_SECRET": secret,
            "TARS_REDIS_URL": redis_url,
            "TARS_LOG_LEVEL": "WARNING",
            "TARS_ORCHESTRATION_PORT": str(port),
        }
        tars = str(Path(sys.executable).with_name("tars"))
        orchestration = subprocess.Popen([tars, "serve", "orchestration"], env=environment, stdout=subprocess.DEVNULL)
        worker_environment = environment | {
            "TARS_WORKER_NAME": "bench-worker",
            "TARS_WORKER_METRICS_PORT": "0",
            "TARS_WORKER_API_KEY": key,
            "TARS_ORCHESTRATION_URL": f"http://127.0.0.1:{port}",
        }
        process = None
        try:
            _wait_healthy(f"http://127.0.0.1:{port}", orchestration)
            process = subprocess.Popen([tars, "worker"], env=worker_environment, stdout=subprocess.DEVNULL)
            yield WorkerStack(runtime, psutil.Process(process.pid))
        finally:
            for service in (process, orchestration):
                if service is not None:
                    service.send_signal(signal.SIGTERM)
                    service.wait(60)
            runtime.close()


def train_and_wait(runtime: Runtime, request: TrainingRequest, evaluation_episodes: int = 1) -> dict[str, Any]:
    run = submit_training(
        runtime.sessions,
        runtime.queue,
        runtime.bus,
        request,
        evaluation_episodes=evaluation_episodes,
        limits=runtime.settings.memory_limits,
        by=None,
    )
    while True:
        with runtime.sessions() as session:
            row = runs.get_run(session, run.run_id)
            if RunStatus(row.status).finished:
                if row.status != RunStatus.SUCCEEDED:
                    raise RuntimeError(f"run {row.id} {row.status}: {row.error}")
                assert row.started_at is not None and row.finished_at is not None
                return {
                    "run_id": row.id,
                    "timesteps": row.timesteps_done,
                    # What its user waits: queueing, training, checkpoint, evaluation, all recorded.
                    "seconds": (row.finished_at - row.created_at).total_seconds(),
                    "summary": runs.evaluation_summary(session, row.id),
                }
        time.sleep(0.05)


class RssSampler:
    """Samples the resident memory of this process and its children in the background."""

    def __init__(self, pid: int | None = None, every: float = 0.5) -> None:
        self.samples: list[tuple[float, int]] = []
        self._pid = pid
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self._every):
            self.samples.append((time.monotonic() - started, process_tree_rss(self._pid)))

    def peak_mib(self, since: float = 0.0) -> float:
        values = [rss for at, rss in self.samples if at >= since]
        return max(values, default=0) / MIB


DATABASE_PREFIX = "tars_bench_"


def add_postgres_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every benchmark that makes its own PostgreSQL databases."""
    parser.add_argument("--postgres-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--database-prefix",
        default=DATABASE_PREFIX,
        help=f"names of the databases made (and dropped) start with this (default {DATABASE_PREFIX})",
    )


@contextmanager
def postgres_database(admin_url: str, name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one benchmark run (dropped before and after)."""
    import psycopg

    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain database name: {name!r}")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def plain_url(database_url: str) -> str:
    """The libpq form of a SQLAlchemy URL (what psycopg and asyncpg connect with)."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def seed_evaluations(database_url: str, statement: str, parameters: dict[str, Any]) -> float:
    """Runs a seeding statement, then ANALYZE evaluations, on a connection of its own with no statement
    timeout; returns the seconds taken. The seed is the benchmark's setup, not what it measures: a
    million rows in one INSERT take longer than the API's TARS_DB_STATEMENT_TIMEOUT_MS (5 s), which the
    measured service keeps."""
    import psycopg

    started = time.monotonic()
    with psycopg.connect(plain_url(database_url), autocommit=True) as connection:
        connection.execute("SET statement_timeout = 0")
        connection.execute(statement, parameters)
        connection.execute("ANALYZE evaluations")
    return time.monotonic() - started


def missing_command(command: str, package: str) -> str | None:
    """Why ``command`` (a name on PATH, or a path) cannot be run here, or None if it can."""
    if shutil.which(command) is None:
        return f"{command} is not installed: `make bench-install`, or apt-get install {package}"
    return None


def missing_module(module: str) -> str | None:
    """Why ``module`` cannot be imported here, or None if it can."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return f"{exc}: `make bench-install`, or pip install -e '.[bench]'"
    return None


def unavailable(reason: str, **facts: Any) -> dict[str, Any]:
    """What a benchmark (or one of its parts) reports when it cannot run here, in place of its figures."""
    return {**facts, "available": False, "reason": reason}


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2))
