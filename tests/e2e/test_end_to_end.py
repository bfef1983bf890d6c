"""The whole path, run as real processes the way an operator runs them.

Embedded (`tars up`: SQLite and the in-process bus) and distributed (`tars serve dashboard-api`,
`tars serve orchestration` and `tars worker` on PostgreSQL and Redis): users made with
`tars users create`, a login, a training job trained, evaluated, stored and served, the live
feed, and every kind of refused request refused without storing anything. Then what an
operator fears: a worker killed mid-job, and `tars up` stopped mid-training.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import psutil
import psycopg
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import PASSWORD
from tests.e2e.conftest import Processes, Stack
from tests.waiting import eventually

EVALUATION_EPISODES = 3  # TARS_EVALUATION_EPISODES in base_env
TRAIN = {"agent_id": "dqn", "episodes": 10}


# helpers


def get_run(stack: Stack, headers: dict[str, str], run_id: str) -> dict[str, Any]:
    response = httpx.get(f"{stack.orchestration_url}/api/v1/runs/{run_id}", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


def wait_run(
    stack: Stack,
    headers: dict[str, str],
    run_id: str,
    until: Callable[[dict[str, Any]], bool] = lambda run: run["status"] in ("succeeded", "failed", "cancelled"),
    timeout: float = 120.0,
) -> dict[str, Any]:
    def there() -> dict[str, Any] | None:
        run = get_run(stack, headers, run_id)
        if until(run):
            return run
        if run["status"] in ("failed", "cancelled"):
            raise AssertionError(f"run {run_id} ended {run['status']}: {run}")
        for name, process in stack.services.items():
            if process.poll() is not None and not name.startswith("worker-"):
                raise AssertionError(f"{name} exited with {process.returncode} while run {run_id} went on")
        return None

    return eventually(there, timeout, interval=0.1, message=lambda: f"run {run_id}: {get_run(stack, headers, run_id)}")


def evaluations(stack: Stack, headers: dict[str, str], **params: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{stack.dashboard_url}/api/v1/evaluations", params=params, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def runs(stack: Stack, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = httpx.get(f"{stack.orchestration_url}/api/v1/runs", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def training_children(pid: int) -> list[psutil.Process]:
    """The processes a worker spawned to train (multiprocessing's spawn runs them as ``-c from multiprocessing...``)."""
    found = []
    for process in descendants(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            if "spawn_main" in " ".join(process.cmdline()):
                found.append(process)
    return found


def wait_training_child(pid: int, timeout: float = 60.0) -> list[psutil.Process]:
    return eventually(lambda: training_children(pid), timeout, interval=0.05, message=f"a training process under {pid}")


def _alive(process: psutil.Process) -> bool:
    # A zombie has stopped; whether its new parent reaps it is up to that parent, not to T.A.R.S.
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_all_gone(processes: list[psutil.Process], timeout: float) -> None:
    def described() -> str:
        still = []
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                if _alive(process):
                    still.append((process.pid, " ".join(process.cmdline())))
        return f"every process to end; still running: {still}"

    eventually(lambda: not any(_alive(p) for p in processes), timeout, interval=0.05, message=described)


def session_members(session_id: int) -> list[psutil.Process]:
    """Live processes in the session a process started with start_new_session=True led."""
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            if os.getsid(process.pid) == session_id and _alive(process):
                members.append(process)
    return members


def psycopg_url(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


class LiveFeed:
    """A dashboard WebSocket subscribed to runs and evaluations; collects frames and answers pings."""

    def __init__(self, stack: Stack, headers: dict[str, str]) -> None:
        token = headers["Authorization"].removeprefix("Bearer ")
        url = stack.dashboard_url.replace("http://", "ws://", 1)
        self._exit = contextlib.ExitStack()
        self._ws: ClientConnection = self._exit.enter_context(connect(f"{url}/ws?token={token}", open_timeout=10))
        assert self._receive()["type"] == "authenticated"
        self._frames: list[dict[str, Any]] = []
        for channel in ("runs", "evaluations"):
            self._ws.send(json.dumps({"type": "subscribe", "channel": channel}))
            # Live events of a channel subscribed to already may come before the next confirmation.
            while (frame := self._receive())["type"] != "subscribed":
                self._frames.append(frame)
            assert frame["channel"] == channel
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, name="live-feed", daemon=True)
        self._thread.start()

    def _receive(self) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(self._ws.recv(timeout=10))
        return frame

    def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            for raw in self._ws:
                frame = json.loads(raw)
                if frame.get("type") == "ping":
                    self._ws.send(json.dumps({"type": "pong"}))
                with self._changed:
                    self._frames.append(frame)
                    self._changed.notify_all()

    def events(self, event: str, **data: Any) -> list[dict[str, Any]]:
        with self._changed:
            return [
                frame["data"]
                for frame in self._frames
                if frame.get("type") == "event"
                and frame["event"] == event
                and all(frame["data"].get(k) == v for k, v in data.items())
            ]

    def wait_for(self, count: int, event: str, timeout: float = 15.0, **data: Any) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(found := self.events(event, **data)) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{count} x {event} {data} not received; frames: {self._frames}")
                self._changed.wait(remaining)
        return found

    def close(self) -> None:
        self._exit.close()
        self._thread.join(10)


@pytest.fixture
def live_feeds() -> Iterator[list[LiveFeed]]:
    opened: list[LiveFeed] = []
    yield opened
    for feed in opened:
        feed.close()


# A. the whole path, embedded and distributed


@pytest.fixture(params=["embedded", "distributed"])
def stack(request: pytest.FixtureRequest) -> Stack:
    start: Callable[..., Stack] = request.getfixturevalue(f"{request.param}_stack")
    return start()


@pytest.mark.slow
def test_train_evaluate_store_and_serve(stack: Stack, processes: Processes, live_feeds: list[LiveFeed]) -> None:
    orchestration, dashboard = stack.orchestration_url, stack.dashboard_url
    services = ((orchestration, "orchestration"), (dashboard, "dashboard-api"), (stack.insight_url, "insight-engine"))
    for url, service in services:
        health = httpx.get(f"{url}/health").json()
        assert (health["status"], health["service"], health["version"]) == ("ok", service, "v1.0.1"), health

    stack.create_user("olivia", "operator")
    stack.create_user("victor", "viewer")
    login = httpx.post(f"{dashboard}/api/v1/auth/login", json={"username": "olivia", "password": PASSWORD})
    assert login.status_code == 200, login.text
    assert login.json()["token_type"] == "bearer"
    operator = {"Authorization": f"Bearer {login.json()['access_token']}"}
    viewer = stack.token("victor")
    wrong = httpx.post(f"{dashboard}/api/v1/auth/login", json={"username": "olivia", "password": "not it"})
    assert wrong.status_code == 401

    feed = LiveFeed(stack, viewer)
    live_feeds.append(feed)

    # Train: accepted at once, trained by the worker, evaluated, stored.
    response = httpx.post(f"{orchestration}/api/v1/train", json=TRAIN, headers=operator)
    assert response.status_code == 200, response.text
    run_id = response.json()["run_id"]
    assert response.json()["status"] in ("queued", "running"), response.json()

    run = wait_run(stack, viewer, run_id)
    assert run["status"] == "succeeded", run
    assert (run["agent_id"], run["algorithm"], run["environment"]) == ("dqn", "dqn", "CartPole-v1")
    assert (run["episodes"], run["episodes_done"], run["attempts"]) == (10, 10, 1)
    assert len(run["rewards"]) == 10 and all(reward > 0 for reward in run["rewards"])
    assert run["evaluation"]["episodes"] == EVALUATION_EPISODES
    assert run["worker"] and run["error"] is None

    dqn = evaluations(stack, viewer, agent_id="dqn")
    assert len(dqn) == EVALUATION_EPISODES
    assert {(e["run_id"], e["environment"]) for e in dqn} == {(run_id, "CartPole-v1")}
    assert evaluations(stack, viewer, run_id=run_id) == dqn

    # An evaluation submitted by hand.
    body = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": 150}
    created = httpx.post(f"{dashboard}/api/v1/evaluations", json=body, headers=operator)
    assert created.status_code == 201, created.text
    assert (created.json()["reward"], created.json()["run_id"]) == (150.0, None)
    ppo = evaluations(stack, viewer, agent_id="ppo")
    assert [(e["id"], e["reward"]) for e in ppo] == [(created.json()["id"], 150.0)]

    # The live feed carried it all, across processes in distributed mode.
    assert feed.wait_for(1, "run.succeeded", run_id=run_id)[0]["episodes_done"] == 10
    assert len(feed.events("run.progress", run_id=run_id)) == 10
    feed.wait_for(EVALUATION_EPISODES, "evaluation.created", run_id=run_id)
    feed.wait_for(1, "evaluation.created", id=created.json()["id"], agent_id="ppo")

    # Refused requests: each with the right status, and none stores anything.
    forged = jwt.encode({"sub": "1", "role": "operator", "exp": int(time.time()) + 600}, "x" * 48, algorithm="HS256")
    for headers in ({}, {"Authorization": "Bearer not.a.token"}, {"Authorization": f"Bearer {forged}"}):
        assert httpx.post(f"{orchestration}/api/v1/train", json=TRAIN, headers=headers).status_code == 401
        assert httpx.post(f"{dashboard}/api/v1/evaluations", json=body, headers=headers).status_code == 401
        assert httpx.get(f"{dashboard}/api/v1/evaluations", headers=headers).status_code == 401
    assert httpx.post(f"{orchestration}/api/v1/train", json=TRAIN, headers=viewer).status_code == 403
    assert httpx.post(f"{dashboard}/api/v1/evaluations", json=body, headers=viewer).status_code == 403

    train, evaluate = f"{orchestration}/api/v1/train", f"{dashboard}/api/v1/evaluations"
    malformed = [
        (train, b'{"agent_id": "dqn", "episodes": ', "json_invalid", None),
        (evaluate, b'{"agent_id": "ppo", "reward": 1', "json_invalid", None),
        (train, b'{"agent_id": "dqn", "episodes": -1}', "greater_than", "episodes"),
        (train, b'{"agent_id": "dqn", "episodes": "10"}', "int_type", "episodes"),
        (evaluate, b'{"agent_id": "ppo", "environment": "CartPole-v1", "reward": "150"}', "float_type", "reward"),
    ]
    for url, content, error_type, field in malformed:
        refused = httpx.post(url, content=content, headers={**operator, "Content-Type": "application/json"})
        assert refused.status_code == 422, (content, refused.text)
        errors = refused.json()["detail"]
        assert [e["type"] for e in errors] == [error_type], (content, errors)
        assert errors[0]["loc"][0] == "body", errors
        if field is not None:
            assert errors[0]["loc"] == ["body", field], errors

    assert [r["run_id"] for r in runs(stack, viewer)] == [run_id]
    assert len(evaluations(stack, viewer)) == EVALUATION_EPISODES + 1
    assert len(feed.events("run.queued")) == 1
    assert len(feed.events("evaluation.created")) == EVALUATION_EPISODES + 1

    feed.close()
    time.sleep(0.5)
    for name, process in stack.services.items():
        assert process.poll() is None, f"{name} exited with {process.returncode}"
        log = processes.log(name)
        assert "Traceback" not in log and " ERROR " not in log, f"{name}.log:\n{log}"


# B. a worker killed mid-job


@pytest.mark.slow
def test_a_job_whose_worker_is_killed_is_finished_by_the_other(distributed_stack: Callable[..., Stack]) -> None:
    stack = distributed_stack(workers=2, TARS_JOB_CLAIM_IDLE_SECONDS="3", TARS_WORKER_HEARTBEAT_SECONDS="0.5")
    assert stack.database_url is not None
    stack.create_user("olivia", "operator")
    headers = stack.token("olivia")
    # DDPG on Pendulum: 200 steps an episode, ~3 s each on one core once it learns (from step 200 here,
    # not the tuned 1000): long enough to kill it mid-way, short enough to train again after.
    episodes = 5
    body = {"agent_id": "ddpg", "episodes": episodes, "seed": 7, "hyperparameters": {"learning_starts": 200}}
    response = httpx.post(f"{stack.orchestration_url}/api/v1/train", json=body, headers=headers)
    assert response.status_code == 200, response.text
    run_id = response.json()["run_id"]

    run = wait_run(stack, headers, run_id, until=lambda r: r["status"] == "running" and r["episodes_done"] > 0)
    assert run["episodes_done"] < episodes, "the run finished before it could be killed; make it longer"
    victim_name = run["worker"]
    assert victim_name in ("worker-0", "worker-1"), run
    survivor_name = "worker-1" if victim_name == "worker-0" else "worker-0"
    victim = stack.services[victim_name]
    # A dedicated worker trains in its own process: killing it kills the training, nothing is left.
    assert not training_children(victim.pid)
    everything = [psutil.Process(victim.pid), *descendants(victim.pid)]

    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    assert_all_gone(everything, timeout=10)
    assert not session_members(victim.pid)

    finished = wait_run(stack, headers, run_id, timeout=120)
    assert finished["status"] == "succeeded", finished
    assert (finished["attempts"], finished["worker"]) == (2, survivor_name), finished
    assert finished["episodes_done"] == episodes and len(finished["rewards"]) == episodes
    assert finished["evaluation"]["episodes"] == EVALUATION_EPISODES

    with psycopg.connect(psycopg_url(stack.database_url)) as conn:
        steps = [row[0] for row in conn.execute("SELECT episode FROM training_steps WHERE run_id = %s", (run_id,))]
        evaluated = conn.execute("SELECT count(*) FROM evaluations WHERE run_id = %s", (run_id,)).fetchone()
        status = conn.execute("SELECT status, attempts FROM training_runs WHERE id = %s", (run_id,)).fetchone()
    assert sorted(steps) == list(range(1, episodes + 1)), steps
    assert evaluated == (EVALUATION_EPISODES,)
    assert status == ("succeeded", 2)

    # The survivor lives on, idle once its heartbeat catches up; the dead worker is no longer listed.
    survivor = stack.services[survivor_name]

    def survivor_idle() -> dict[str, Any] | None:
        workers = {w["name"]: w for w in httpx.get(f"{stack.orchestration_url}/health").json()["workers"]}
        idle = survivor_name in workers and workers[survivor_name]["busy"] == 0
        return workers if idle and not training_children(survivor.pid) else None

    workers = eventually(survivor_idle, 10, interval=0.1, message=f"{survivor_name} idle in /health")
    assert survivor.poll() is None
    assert victim_name not in workers, workers


# C. `tars up` stops cleanly on SIGTERM and on Ctrl-C


@pytest.mark.slow
@pytest.mark.parametrize(
    ("training", "signal_group"),
    [(False, False), (True, False), (True, True)],
    # ctrl-c: SIGINT to the whole process group, as a terminal sends it; the training child gets it too.
    ids=["idle-sigterm", "mid-training-sigterm", "mid-training-ctrl-c"],
)
def test_tars_up_stops_cleanly(
    embedded_stack: Callable[..., Stack],
    processes: Processes,
    live_feeds: list[LiveFeed],
    training: bool,
    signal_group: bool,
) -> None:
    stack = embedded_stack(TARS_WORKER_SHUTDOWN_GRACE_SECONDS="1")
    up = stack.services["tars-up"]
    run_id = None
    if training:
        stack.create_user("olivia", "operator")
        headers = stack.token("olivia")
        body = {"agent_id": "dqn", "episodes": 100_000}
        response = httpx.post(f"{stack.orchestration_url}/api/v1/train", json=body, headers=headers)
        assert response.status_code == 200, response.text
        run_id = response.json()["run_id"]
        wait_training_child(up.pid)
        wait_run(stack, headers, run_id, until=lambda r: r["episodes_done"] > 0, timeout=60)
        # A dashboard left open must not hold the shutdown up.
        live_feeds.append(LiveFeed(stack, headers))
    children = descendants(up.pid)

    started = time.monotonic()
    if signal_group:
        os.killpg(up.pid, signal.SIGINT)
    else:
        up.send_signal(signal.SIGTERM)
    try:
        code = up.wait(20)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"`tars up` still running 20 s after the signal:\n{processes.log('tars-up')}") from None
    took = time.monotonic() - started
    assert code == 0, processes.log("tars-up")
    assert took < 10, f"stopping took {took:.1f} s"
    assert_all_gone(children, timeout=5)
    assert not session_members(up.pid)
    assert "Traceback" not in processes.log("tars-up"), processes.log("tars-up")

    if run_id is not None:
        # The unfinished run was handed back to the queue (not failed), for the next `tars up` to train again.
        with contextlib.closing(sqlite3.connect(stack.data_dir / "tars.db")) as conn:
            row = conn.execute("SELECT status, attempts FROM training_runs WHERE id = ?", (run_id,)).fetchone()
        assert row == ("queued", 1)
