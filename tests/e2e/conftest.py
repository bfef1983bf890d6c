"""Fixtures that run T.A.R.S. as real processes, the way an operator does."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import PASSWORD, TEST_SECRET
from tests.waiting import eventually

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

TARS = [sys.executable, "-m", "tars"]


@dataclass
class Stack:
    """A running T.A.R.S. and how to reach it."""

    dashboard_url: str
    orchestration_url: str
    env: dict[str, str]
    data_dir: Path
    # The processes that make it up, by name ("tars-up"; or "dashboard-api", "orchestration", "worker-0", ...).
    services: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # The insight engine's /health and /metrics: in `tars up`, or its own process.
    insight_url: str = ""
    # The SQLAlchemy URL of its PostgreSQL database (distributed mode only).
    database_url: str | None = None
    # Where each separate worker serves /metrics, by name (distributed mode only).
    worker_metrics_urls: dict[str, str] = field(default_factory=dict)

    def tars(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*TARS, *args], env=self.env, input=input, capture_output=True, text=True, timeout=120, check=False
        )

    def create_user(self, username: str, role: str) -> None:
        result = self.tars("users", "create", username, "--role", role, "--password-stdin", input=PASSWORD + "\n")
        assert result.returncode == 0, result.stderr

    def token(self, username: str) -> dict[str, str]:
        response = httpx.post(
            f"{self.orchestration_url}/api/v1/auth/login", json={"username": username, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}


class Processes:
    """Starts processes and guarantees none outlives the test."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.running: list[subprocess.Popen[bytes]] = []
        self.names: dict[int, str] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """`tars *args`."""
        return self.run(name, [*TARS, *args], env)

    def run(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.running.append(process)
        self.names[process.pid] = name
        return process

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # Whatever a process left behind in its session (a training child of a killed worker) goes too.
        for process in self.running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


def wait_healthy(url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> None:
    def healthy() -> bool:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} before {url} was healthy")
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(healthy, timeout, interval=0.1, message=f"{url} to be healthy")


def announced(processes: Processes, name: str, pattern: str, timeout: float = 60.0) -> str:
    """The URL a process printed once listening (servers asked for port 0 tell their port so)."""

    def printed() -> str | None:
        process = next(p for p in reversed(processes.running) if processes.names[p.pid] == name)
        found = re.search(pattern + r"\s+(http://\S+?)(?:/docs|/metrics|/health)?\s", processes.log(name))
        if found is None and process.poll() is not None:
            raise AssertionError(f"{name} exited with {process.returncode}:\n{processes.log(name)[-3000:]}")
        return found[1] if found else None

    return eventually(printed, timeout, interval=0.05, message=f"{name} to print where it listens")


def port_of(url: str) -> str:
    return url.rsplit(":", 1)[1]


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARS_")}
    env.update(
        {
            "TARS_DATA_DIR": str(data_dir),
            "TARS_JWT_SECRET": TEST_SECRET,
            "TARS_EVALUATION_EPISODES": "3",
            "TARS_LOG_LEVEL": "INFO",
            "TARS_WORKER_METRICS_PORT": "0",
        }
    )
    env.update(extra)
    return env


@pytest.fixture
def embedded_stack(tmp_path: Path, processes: Processes) -> Callable[..., Stack]:
    """Starts `tars up` (embedded mode) on ports it binds (port 0) and prints; a restart with the
    stack's env takes the same ports again."""

    def start(**extra: str) -> Stack:
        env = base_env(tmp_path / "data", **extra)
        ports = ["--dashboard-port", "0", "--orchestration-port", "0", "--insight-port", "0"]
        process = processes.start("tars-up", ["up", *ports], env)
        stack = Stack(
            dashboard_url=announced(processes, "tars-up", "dashboard-api"),
            orchestration_url=announced(processes, "tars-up", "orchestration"),
            env=env,
            data_dir=tmp_path / "data",
            services={"tars-up": process},
            insight_url=announced(processes, "tars-up", "insight-engine"),
        )
        env["TARS_DASHBOARD_PORT"] = port_of(stack.dashboard_url)
        env["TARS_ORCHESTRATION_PORT"] = port_of(stack.orchestration_url)
        env["TARS_INSIGHT_PORT"] = port_of(stack.insight_url)
        wait_healthy(stack.dashboard_url, process)
        wait_healthy(stack.orchestration_url, process)
        wait_healthy(stack.insight_url, process)
        return stack

    return start


@pytest.fixture
def distributed_stack(
    tmp_path: Path, empty_postgres_url: str, redis_url: str, processes: Processes
) -> Iterator[Callable[..., Stack]]:
    """Starts T.A.R.S. distributed on a fresh PostgreSQL database and Redis, one process per service.

    As an operator does: `tars db upgrade`, then `tars serve dashboard-api`, `tars serve orchestration`,
    `tars serve insight-engine` and one `tars worker` per ``workers`` (named worker-0, worker-1, ...),
    each on a port it binds (port 0) and prints; the stack's env then names the services' ports, for the
    CLI and restarts.
    Returns once every service is healthy and every worker has reported in.
    """

    def start(workers: int = 1, **extra: str) -> Stack:
        env = base_env(tmp_path / "data", TARS_DATABASE_URL=empty_postgres_url, TARS_REDIS_URL=redis_url, **extra)
        stack = Stack(
            dashboard_url="",  # known once it listens
            orchestration_url="",
            env=env,
            data_dir=tmp_path / "data",
            database_url=empty_postgres_url,
        )
        upgrade = stack.tars("db", "upgrade")
        assert upgrade.returncode == 0, upgrade.stderr
        assert "(was empty)" in upgrade.stdout, upgrade.stdout
        for service in ("dashboard-api", "orchestration", "insight-engine"):
            stack.services[service] = processes.start(service, ["serve", service, "--port", "0"], env)
        stack.dashboard_url = announced(processes, "dashboard-api", "dashboard-api listening on")
        stack.orchestration_url = announced(processes, "orchestration", "orchestration listening on")
        stack.insight_url = announced(processes, "insight-engine", "insight-engine listening on")
        env["TARS_DASHBOARD_PORT"] = port_of(stack.dashboard_url)
        env["TARS_ORCHESTRATION_PORT"] = port_of(stack.orchestration_url)
        env["TARS_INSIGHT_PORT"] = port_of(stack.insight_url)
        # Workers hold no database client: they report through orchestration, with an operator's key.
        stack.create_user("fleet", "operator")
        created = stack.tars("apikeys", "create", "--user", "fleet", "--role", "operator", "--name", "workers")
        assert created.returncode == 0, created.stderr
        stack.env["TARS_WORKER_API_KEY"] = created.stdout.strip().splitlines()[-1]
        stack.env["TARS_ORCHESTRATION_URL"] = stack.orchestration_url
        names = [f"worker-{n}" for n in range(workers)]
        for name in names:
            # Each its own /metrics port, as on any host that runs more than one worker.
            worker_env = {**stack.env, "TARS_WORKER_NAME": name}
            del worker_env["TARS_DATABASE_URL"]
            stack.services[name] = processes.start(name, ["worker", "--metrics-port", "0"], worker_env)
        for name in names:
            stack.worker_metrics_urls[name] = announced(processes, name, "worker metrics listening on") + "/metrics"
        wait_healthy(stack.dashboard_url, stack.services["dashboard-api"])
        wait_healthy(stack.orchestration_url, stack.services["orchestration"])
        wait_healthy(stack.insight_url, stack.services["insight-engine"])
        try:
            wait_workers(stack, names)
        except AssertionError as exc:
            logs = "\n".join(f"--- {name}.log ---\n{processes.log(name)[-3000:]}" for name in names)
            raise AssertionError(f"{exc}\n{logs}") from None
        return stack

    yield start
    # Before the database is dropped and Redis emptied: services must not see their data vanish.
    processes.stop_all()


def wait_workers(stack: Stack, names: list[str], timeout: float = 60.0) -> None:
    """Wait until the orchestration service lists every one of ``names`` among its live workers."""
    seen: set[str] = set()

    def reported_in() -> bool:
        nonlocal seen
        for name in names:
            process = stack.services.get(name)
            if process is not None and process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode} before reporting in")
        health = httpx.get(f"{stack.orchestration_url}/health", timeout=5).json()
        seen = {worker["name"] for worker in health.get("workers", [])}
        return seen >= set(names)

    eventually(reported_in, timeout, interval=0.1, message=lambda: f"workers {sorted(set(names) - seen)} to report in")


# Debian's chromium, driven by Playwright: never a browser download.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Headless Debian chromium; skipped when it is not installed, except on CI where that is a failure."""
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A dashboard page; its test fails on any uncaught script error."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    uncaught: list[str] = []
    page.on("pageerror", lambda error: uncaught.append(str(error)))
    yield page
    context.close()
    assert uncaught == []


def log_in(page: Page, dashboard_url: str, username: str, route: str = "") -> None:
    """Sign in on the dashboard's page at ``route``, and wait until its live feed is connected. The
    document is marked: `same_document` tells whether it was never replaced (reloaded) since."""
    from playwright.sync_api import expect

    page.goto(f"{dashboard_url}/{route}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#connection")).to_have_text("connected")
    page.evaluate("window.__sameDocument = true")


def same_document(page: Page) -> bool:
    """Whether the page still shows the document `log_in` marked: what happened since arrived live."""
    return bool(page.evaluate("window.__sameDocument === true"))


# An origin Chromium never reaches: Playwright answers every request to it.
HARNESS_ORIGIN = "http://dashboard.test"


@contextlib.contextmanager
def harness_page(browser: Browser, harness: str, prepare: Callable[[Page], None] | None = None) -> Iterator[Page]:
    """A page that loads `harness` (HTML) with the dashboard's real modules from static/, and no
    server; `prepare` runs before it loads. Fails the test on any uncaught script error."""
    from tars.api.routes.ui import STATIC_DIR

    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def serve(route: Route) -> None:
        path = route.request.url.removeprefix(HARNESS_ORIGIN)
        static = STATIC_DIR / path.removeprefix("/static/")
        if path == "/harness.html":
            route.fulfill(body=harness, content_type="text/html")
        elif path.startswith("/static/") and static.is_file():
            route.fulfill(path=static, content_type="text/javascript")
        else:
            route.fulfill(status=404)

    page.route(f"{HARNESS_ORIGIN}/**", serve)
    if prepare is not None:
        prepare(page)
    page.goto(f"{HARNESS_ORIGIN}/harness.html")  # returns after the load event, so after the modules ran
    yield page
    assert errors == [], errors
    context.close()
