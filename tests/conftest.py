"""Shared fixtures: real PostgreSQL and Redis servers, and T.A.R.S. runtimes on both backends."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio._core._fileio  # noqa: F401 - see the comment below
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from tars.api.applications import create_dashboard_app, create_orchestration_app
from tars.cli.servers import bound_address, make_server
from tars.cli.workers import make_worker
from tars.domain.users import Role
from tars.services.auth.invalidations_file import DataDirInvalidations
from tars.services.auth.users import Users
from tars.services.runtime import Runtime
from tars.settings import Settings
from tars.storage import migrate
from tars.storage.database import make_engine, make_session_factory
from tars.storage.users import get_user_by_username
from tars.wiring.runtime import build_runtime
from tars.worker.loop import Worker
from tests.waiting import eventually

PG_ADMIN_URL = os.environ.get("TARS_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# anyio imports its parts lazily, and pytest rewrites anyio's modules as they are imported (anyio is a
# pytest plugin). CPython 3.11.7's ast.parse can fail ("AST constructor recursion depth mismatch")
# when that happens deep in an ASGI middleware stack, as serving the first static file does; the
# import above happens first, at a shallow depth.
REDIS_TEST_URL = os.environ.get("TARS_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
TEST_SECRET = "test-secret-" + "x" * 40
PASSWORD = "correct horse battery"
IN_CI = bool(os.environ.get("CI"))


def _unavailable(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable: {exc}"
    if IN_CI:
        pytest.fail(message + " (CI must provide it)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        _unavailable("PostgreSQL", exc)
    return PG_ADMIN_URL


@contextmanager
def _database(admin_url: str, template: str | None = None) -> Iterator[str]:
    name = f"tars_test_{secrets.token_hex(6)}"
    clause = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{clause}')
    base = admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh database with no schema, dropped afterwards."""
    with _database(postgres_admin_url) as url:
        yield url


def _prepare(url: str, *, with_users: bool) -> None:
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        if with_users:
            # Creating users changes no cached credential: the invalidations are never announced to.
            users = Users(make_session_factory(engine), DataDirInvalidations(Path(tempfile.gettempdir())))
            for role in Role:
                users.create(f"{role.value}-user", PASSWORD, role)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def _migrated_template(postgres_admin_url: str) -> Iterator[str]:
    with _database(postgres_admin_url) as url:
        _prepare(url, with_users=False)
        yield url.rsplit("/", 1)[1]


@pytest.fixture(scope="session")
def _seeded_template(postgres_admin_url: str) -> Iterator[str]:
    with _database(postgres_admin_url) as url:
        _prepare(url, with_users=True)
        yield url.rsplit("/", 1)[1]


@pytest.fixture(scope="session")
def _seeded_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "tars.db"
    _prepare(f"sqlite:///{path}", with_users=True)
    return path


@pytest.fixture
def postgres_url(postgres_admin_url: str, _migrated_template: str) -> Iterator[str]:
    """A fresh database already at the latest schema (copied from a template: fast), dropped afterwards."""
    with _database(postgres_admin_url, template=_migrated_template) as url:
        yield url


@pytest.fixture
def seeded_postgres_url(postgres_admin_url: str, _seeded_template: str) -> Iterator[str]:
    """Like postgres_url, with one user of each role (see SEEDED_USERS)."""
    with _database(postgres_admin_url, template=_seeded_template) as url:
        yield url


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database emptied before and after the test."""
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable("Redis", exc)
    client.flushdb()
    yield REDIS_TEST_URL
    client.flushdb()
    client.close()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port where connections are refused: bound for the test but never listening."""
    with bound_socket() as sock:
        yield int(sock.getsockname()[1])


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "jwt_secret": TEST_SECRET,
        "evaluation_episodes": 3,
        "job_claim_idle_seconds": 3.0,
        "worker_heartbeat_seconds": 0.5,
        "worker_shutdown_grace_seconds": 5.0,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(params=["embedded", "distributed"])
def backend(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings for a T.A.R.S. on the chosen backend whose database holds SEEDED_USERS."""
    if backend == "embedded":
        shutil.copyfile(request.getfixturevalue("_seeded_sqlite"), tmp_path / "tars.db")
        return make_settings(tmp_path)
    return make_settings(
        tmp_path,
        database_url=request.getfixturevalue("seeded_postgres_url"),
        redis_url=request.getfixturevalue("redis_url"),
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    built = build_runtime(settings, migrate_schema=True)
    yield built
    built.close()


SEEDED_USERS = {role.value: f"{role.value}-user" for role in Role}


@pytest.fixture
def users(runtime: Runtime) -> dict[str, str]:
    """One user of each role, already in the database; maps role name to username."""
    return dict(SEEDED_USERS)


@pytest.fixture
def dashboard(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_dashboard_app(runtime)) as client:
        yield client


@pytest.fixture
def orchestration(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_orchestration_app(runtime)) as client:
        yield client


@pytest.fixture
def second_replica(settings: Settings, runtime: Runtime) -> Iterator[TestClient]:
    """Another process of the same deployment (orchestration): its own runtime, credential cache and
    listener; the same database, and Redis when distributed."""
    other = build_runtime(settings, migrate_schema=False)
    try:
        with TestClient(create_orchestration_app(other)) as client:
            yield client
    finally:
        other.close()


def bearer(credential: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def login(client: TestClient, username: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def auth(runtime: Runtime, users: dict[str, str]) -> dict[str, dict[str, str]]:
    """Authorization headers for each role (tokens issued directly; login has tests of its own)."""
    headers = {}
    with runtime.sessions() as session:
        for role, username in users.items():
            user = get_user_by_username(session, username)
            assert user is not None
            headers[role] = {"Authorization": f"Bearer {runtime.security.tokens.issue(user).access_token}"}
    return headers


@pytest.fixture
def worker(runtime: Runtime) -> Iterator[Worker]:
    """A worker training in this process, as `tars worker` does, taking jobs from the runtime's queue."""
    started = make_worker(runtime, beside_apis=False)
    started.start()
    yield started
    started.stop()
    started.join(30)


def bound_socket(port: int = 0) -> socket.socket:
    """A TCP socket bound to ``port`` on 127.0.0.1 (0: one the system picks), not listening yet:
    connections are refused until a server listens on it, and no other process can take the port."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # rebinding just after a stop
    sock.bind(("127.0.0.1", port))
    return sock


class AppServer:
    """An app served by uvicorn in a thread of this process, on a port bound when it is made (so
    known before it starts, and nobody else's), the same one again across restarts."""

    def __init__(self, make_app: Callable[[], Any]) -> None:
        self._make_app = make_app
        self._socket: socket.socket | None = bound_socket()
        self.port = int(self._socket.getsockname()[1])
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # The server closes its socket when it stops: a restart binds the port it had again.
        sock, self._socket = self._socket or bound_socket(self.port), None
        server = make_server(self._make_app(), "127.0.0.1", self.port, "warning")
        self._server = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        eventually(lambda: server.started, message="the server to start")
        assert bound_address(server)[1] == self.port

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(10)
        self._server = self._thread = None
