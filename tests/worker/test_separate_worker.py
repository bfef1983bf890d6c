"""A separate worker (`tars worker`) records through a real orchestration service, not the database."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from pydantic import SecretStr

from tars.api.applications import create_orchestration_app
from tars.cli.main import cli
from tars.cli.workers import SeparateWorker, make_separate_worker
from tars.domain.runs import RunStatus
from tars.domain.users import Role
from tars.services.auth.apikeys import add_key as create_key
from tars.services.runtime import Runtime
from tars.services.training import cancel_run
from tars.settings import Settings
from tars.storage import runs
from tars.storage.database import transaction
from tars.storage.evaluations import EvaluationFilter, list_evaluations
from tars.worker.remote import OrchestrationClient
from tests.conftest import SEEDED_USERS, AppServer
from tests.waiting import eventually
from tests.worker.test_worker import FINISHED, EventRecorder, submit, wait_for, wait_running

distributed = pytest.mark.parametrize("backend", ["distributed"], indirect=True)


class OrchestrationServer(AppServer):
    """The orchestration service in a thread of this process, on one port across restarts."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(lambda: create_orchestration_app(runtime))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def orchestration_server(runtime: Runtime) -> Iterator[OrchestrationServer]:
    server = OrchestrationServer(runtime)
    server.start()
    yield server
    server.stop()


def operator_key(runtime: Runtime) -> str:
    with transaction(runtime.sessions) as session:
        return create_key(session, None, username=SEEDED_USERS["operator"], role=Role.OPERATOR, name="workers").key


@pytest.fixture
def worker_settings(runtime: Runtime, orchestration_server: OrchestrationServer) -> Settings:
    return runtime.settings.model_copy(
        update={
            "worker_name": "test-worker",
            "worker_heartbeat_seconds": 0.2,
            "worker_api_key": SecretStr(operator_key(runtime)),
            "orchestration_url": orchestration_server.url,
            "worker_report_retry_seconds": 30.0,
        }
    )


def started(settings: Settings) -> SeparateWorker:
    separate = make_separate_worker(settings)
    separate.worker.start()
    return separate


def stopped(separate: SeparateWorker, timeout: float = 30) -> None:
    separate.worker.stop()
    separate.worker.join(timeout)
    separate.close()


@distributed
def test_a_job_is_trained_and_recorded_through_orchestration(runtime: Runtime, worker_settings: Settings) -> None:
    watcher = EventRecorder(runtime)
    separate = started(worker_settings)
    try:
        run_id = submit(runtime)
        assert wait_for(runtime, run_id, FINISHED) is RunStatus.SUCCEEDED
    finally:
        stopped(separate)
    with runtime.sessions() as session:
        run = runs.get_run(session, run_id)
        assert (run.episodes_done, run.attempts, run.worker) == (3, 1, "test-worker")
        assert run.model_path is not None and Path(run.model_path).is_file()
        assert len(runs.step_rewards(session, run_id)) == 3
        assert runs.latest_metrics(session, run_id) is not None
        assert len(list_evaluations(session, EvaluationFilter(run_id=run_id), limit=10).items) == 2
    eventually(lambda: any(e.type == "run.succeeded" for e in watcher.events), 5, message="run.succeeded on the bus")
    watcher.close()
    types = [e.type for e in watcher.events if e.data.get("run_id") == run_id]
    assert types == ["run.queued", "run.started", *["run.progress"] * 3, *["evaluation.created"] * 2, "run.succeeded"]


@distributed
def test_cancel_and_hand_back_go_through_orchestration(runtime: Runtime, worker_settings: Settings) -> None:
    separate = started(worker_settings)
    try:
        cancelled = submit(runtime, episodes=100_000)
        wait_running(runtime, cancelled)
        cancel_run(runtime.sessions, runtime.bus, cancelled, by=None)
        assert wait_for(runtime, cancelled, FINISHED, timeout=15) is RunStatus.CANCELLED
        handed_back = submit(runtime, episodes=100_000)
        wait_running(runtime, handed_back)
    finally:
        separate.worker._shutdown_grace = 0.0  # past its grace period at once
        stopped(separate)
    with runtime.sessions() as session:
        assert runs.get_run(session, handed_back).status == RunStatus.QUEUED
    delivery = runtime.queue.receive("next-worker", timeout=5)
    assert delivery is not None and delivery.job.run_id == handed_back
    runtime.queue.ack(delivery)


@distributed
def test_a_run_survives_orchestration_restarting_mid_run(
    runtime: Runtime, worker_settings: Settings, orchestration_server: OrchestrationServer
) -> None:
    separate = started(worker_settings)
    try:
        run_id = submit(runtime, episodes=300)
        wait_running(runtime, run_id)
        orchestration_server.stop()  # reports fail while it is away; the worker keeps them and retries
        time.sleep(1.5)  # the outage itself: what is tested is a worker riding one out
        orchestration_server.start()
        assert wait_for(runtime, run_id, FINISHED) is RunStatus.SUCCEEDED
    finally:
        stopped(separate)
    with runtime.sessions() as session:
        run = runs.get_run(session, run_id)
        assert (run.attempts, run.episodes_done) == (1, 300)
        assert len(runs.step_rewards(session, run_id)) == 300  # every episode once
        assert len(list_evaluations(session, EvaluationFilter(run_id=run_id), limit=10).items) == 2


@distributed
def test_queued_runs_redis_forgot_are_recovered_through_orchestration(
    runtime: Runtime, worker_settings: Settings, redis_url: str
) -> None:
    lost = submit(runtime, episodes=1)
    redis.Redis.from_url(redis_url).flushdb()  # Redis restarted without its data
    separate = started(worker_settings)
    try:
        assert wait_for(runtime, lost, FINISHED) is RunStatus.SUCCEEDED
    finally:
        stopped(separate)
    with runtime.sessions() as session:
        assert runs.get_run(session, lost).attempts == 1


@distributed
def test_tars_worker_refuses_to_start_without_a_key_or_with_a_refused_one(
    worker_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "TARS_DATA_DIR": str(worker_settings.data_dir),
        "TARS_JWT_SECRET": "x" * 40,
        "TARS_REDIS_URL": str(worker_settings.redis_url),
        "TARS_ORCHESTRATION_URL": str(worker_settings.orchestration_url),
        "TARS_WORKER_METRICS_PORT": "0",
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 1 and "TARS_WORKER_API_KEY" in result.output
    monkeypatch.setenv("TARS_WORKER_API_KEY", "tars_000000000000_" + "A" * 43)
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 1 and "refused to authenticate: HTTP 401" in result.output


def test_a_separate_worker_loads_no_database_layer() -> None:
    """What keeps a worker's memory within 10 % of plain SB3: no SQLAlchemy, no driver, no auth stack."""
    code = (
        "import sys; import tars.cli.main, tars.cli.workers, tars.worker.loop, tars.worker.remote; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'psycopg', 'asyncpg', 'jwt', 'argon2', "
        "'fastapi', 'uvicorn'}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


@distributed
def test_a_connection_the_service_closed_while_idle_is_replaced_quietly(
    worker_settings: Settings, orchestration_server: OrchestrationServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert worker_settings.worker_api_key is not None
    client = OrchestrationClient(
        orchestration_server.url, worker_settings.worker_api_key.get_secret_value(), retry_seconds=5
    )
    assert client.call("GET", "/api/v1/runs?limit=1")[0] == 200
    orchestration_server.stop()  # closes the kept-alive connection, as an idle timeout would
    orchestration_server.start()
    with caplog.at_level(logging.WARNING, logger="tars.worker.remote"):
        assert client.call("GET", "/api/v1/runs?limit=1")[0] == 200
    assert caplog.records == []
