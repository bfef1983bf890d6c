"""The whole path as an operator runs it: real processes, embedded and distributed."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import free_port
from tests.e2e.conftest import Processes, Stack, base_env, wait_healthy

TRAIN = {"agent_id": "dqn", "episodes": 10}


def start_distributed(
    processes: Processes, data_dir: Path, database_url: str, redis_url: str, workers: int = 1, **extra: str
) -> tuple[Stack, list[subprocess.Popen[bytes]]]:
    dashboard_port, orchestration_port = free_port(), free_port()
    env = base_env(
        data_dir,
        TARS_DATABASE_URL=database_url,
        TARS_REDIS_URL=redis_url,
        TARS_DASHBOARD_PORT=str(dashboard_port),
        TARS_ORCHESTRATION_PORT=str(orchestration_port),
        **extra,
    )
    stack = Stack(f"http://127.0.0.1:{dashboard_port}", f"http://127.0.0.1:{orchestration_port}", env, data_dir)
    upgrade = stack.tars("db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    dashboard = processes.start("dashboard-api", ["serve", "dashboard-api"], env)
    orchestration = processes.start("orchestration", ["serve", "orchestration"], env)
    started = [
        processes.start(f"worker-{n}", ["worker"], {**env, "TARS_WORKER_NAME": f"worker-{n}"}) for n in range(workers)
    ]
    wait_healthy(stack.dashboard_url, dashboard)
    wait_healthy(stack.orchestration_url, orchestration)
    return stack, started


@pytest.fixture(params=["embedded", "distributed"])
def stack(
    request: pytest.FixtureRequest,
    embedded_stack: Callable[..., Stack],
    processes: Processes,
    tmp_path: Path,
) -> Stack:
    if request.param == "embedded":
        return embedded_stack()
    database_url = request.getfixturevalue("empty_postgres_url")
    redis_url = request.getfixturevalue("redis_url")
    started, _workers = start_distributed(processes, tmp_path / "data", database_url, redis_url)
    return started


def wait_run(stack: Stack, headers: dict[str, str], run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = httpx.get(f"{stack.orchestration_url}/api/v1/runs/{run_id}", headers=headers).json()
        if run["status"] in ("succeeded", "failed"):
            return run
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s")


@pytest.mark.slow
def test_train_evaluate_store_serve(stack: Stack) -> None:
    stack.create_user("olivia", "operator")
    stack.create_user("victor", "viewer")
    operator, viewer = stack.token("olivia"), stack.token("victor")
    orchestration, dashboard = stack.orchestration_url, stack.dashboard_url

    for service in (orchestration, dashboard):
        health = httpx.get(f"{service}/health").json()
        assert (health["status"], health["version"]) == ("ok", "v1.0.1")

    response = httpx.post(f"{orchestration}/api/v1/train", json=TRAIN, headers=operator)
    assert response.status_code == 200, response.text
    assert response.json()["status"] in ("started", "queued")
    run_id = response.json()["run_id"]

    submitted = httpx.post(
        f"{dashboard}/api/v1/evaluations",
        json={"agent_id": "ppo", "environment": "CartPole-v1", "reward": 150},
        headers=operator,
    )
    assert submitted.status_code == 201, submitted.text

    run = wait_run(stack, viewer, run_id)
    assert run["status"] == "succeeded", run
    assert run["episodes_done"] == 10 and len(run["rewards"]) == 10
    assert run["evaluation"]["episodes"] == 3

    dqn = httpx.get(f"{dashboard}/api/v1/evaluations", params={"agent_id": "dqn"}, headers=viewer).json()["items"]
    assert len(dqn) == 3 and {e["run_id"] for e in dqn} == {run_id}
    ppo = httpx.get(f"{dashboard}/api/v1/evaluations", params={"agent_id": "ppo"}, headers=viewer).json()["items"]
    assert [e["reward"] for e in ppo] == [150.0]

    # Refused requests: each with the right status, and none stores anything.
    assert httpx.post(f"{orchestration}/api/v1/train", json=TRAIN).status_code == 401
    assert httpx.get(f"{dashboard}/api/v1/evaluations", headers={"Authorization": "Bearer x.y.z"}).status_code == 401
    assert httpx.post(f"{orchestration}/api/v1/train", json=TRAIN, headers=viewer).status_code == 403
    bad = [
        (f"{orchestration}/api/v1/train", b'{"agent_id": "dqn", "episodes": ', "json_invalid"),
        (f"{orchestration}/api/v1/train", b'{"agent_id": "dqn", "episodes": -1}', "episodes"),
        (f"{dashboard}/api/v1/evaluations", b'{"agent_id":"ppo","environment":"CartPole-v1","reward":"150"}', "reward"),
    ]
    for url, content, field in bad:
        refused = httpx.post(url, content=content, headers={**operator, "Content-Type": "application/json"})
        assert refused.status_code == 422
        error = refused.json()["detail"][0]
        assert field in (error["loc"][-1], error["type"]), error
    runs = httpx.get(f"{orchestration}/api/v1/runs", headers=viewer).json()["items"]
    assert [r["run_id"] for r in runs] == [run_id]
    everything = httpx.get(f"{dashboard}/api/v1/evaluations", headers=viewer).json()["items"]
    assert len(everything) == 4


def _training_children(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
def test_a_job_whose_worker_is_killed_is_finished_by_another(
    processes: Processes, tmp_path: Path, empty_postgres_url: str, redis_url: str
) -> None:
    stack, workers = start_distributed(
        processes,
        tmp_path / "data",
        empty_postgres_url,
        redis_url,
        workers=2,
        TARS_JOB_CLAIM_IDLE_SECONDS="3",
        TARS_WORKER_HEARTBEAT_SECONDS="0.5",
    )
    stack.create_user("olivia", "operator")
    headers = stack.token("olivia")
    body = {"agent_id": "ddpg", "episodes": 6, "seed": 1}
    run_id = httpx.post(f"{stack.orchestration_url}/api/v1/train", json=body, headers=headers).json()["run_id"]

    deadline = time.monotonic() + 90
    while True:
        run = httpx.get(f"{stack.orchestration_url}/api/v1/runs/{run_id}", headers=headers).json()
        if run["status"] == "running" and run["episodes_done"] >= 1:
            break
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
    victim = next(w for n, w in enumerate(workers) if run["worker"] == f"worker-{n}")
    survivor_name = next(f"worker-{n}" for n, w in enumerate(workers) if w is not victim)
    children = _training_children(victim.pid)
    assert children, "the job should train in a child process"
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    # The orphaned training child notices and stops; nothing keeps training for a dead worker.
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive

    finished = wait_run(stack, headers, run_id, timeout=180)
    assert finished["status"] == "succeeded", finished
    assert (finished["attempts"], finished["worker"]) == (2, survivor_name)
    assert finished["episodes_done"] == 6 and len(finished["rewards"]) == 6
    evaluations = httpx.get(
        f"{stack.dashboard_url}/api/v1/evaluations", params={"run_id": run_id}, headers=headers
    ).json()["items"]
    assert len(evaluations) == 3


@pytest.mark.slow
def test_tars_up_stops_cleanly_mid_training(embedded_stack: Callable[..., Stack], processes: Processes) -> None:
    stack = embedded_stack(TARS_WORKER_SHUTDOWN_GRACE_SECONDS="1")
    stack.create_user("olivia", "operator")
    headers = stack.token("olivia")
    body = {"agent_id": "dqn", "episodes": 100_000}
    run_id = httpx.post(f"{stack.orchestration_url}/api/v1/train", json=body, headers=headers).json()["run_id"]
    up = processes.running[0]
    deadline = time.monotonic() + 60
    while not _training_children(up.pid):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    children = psutil.Process(up.pid).children(recursive=True)

    started = time.monotonic()
    up.send_signal(signal.SIGTERM)
    assert up.wait(30) == 0
    assert time.monotonic() - started < 15
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive
    assert not os.path.exists(f"/proc/{up.pid}")
    # The unfinished run was handed back, and the next start takes it up again.
    restarted = processes.start("tars-up-again", ["up"], stack.env)
    wait_healthy(stack.orchestration_url, restarted)
    headers = stack.token("olivia")
    deadline = time.monotonic() + 60
    while True:
        run = httpx.get(f"{stack.orchestration_url}/api/v1/runs/{run_id}", headers=headers).json()
        if run["attempts"] == 2 and run["status"] == "running":
            break
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
