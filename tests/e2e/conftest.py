"""Fixtures that run T.A.R.S. as real processes, the way an operator does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import PASSWORD, TEST_SECRET, free_port

TARS = [sys.executable, "-m", "tars"]


@dataclass
class Stack:
    """A running T.A.R.S. and how to reach it."""

    dashboard_url: str
    orchestration_url: str
    env: dict[str, str]
    data_dir: Path

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

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [*TARS, *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.running.append(process)
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


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


def wait_healthy(url: str, process: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode} before {url} was healthy")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not healthy after {timeout} s")


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARS_")}
    env.update(
        {
            "TARS_DATA_DIR": str(data_dir),
            "TARS_JWT_SECRET": TEST_SECRET,
            "TARS_EVALUATION_EPISODES": "3",
            "TARS_LOG_LEVEL": "INFO",
        }
    )
    env.update(extra)
    return env


@pytest.fixture
def embedded_stack(tmp_path: Path, processes: Processes) -> Callable[..., Stack]:
    """Starts `tars up` (embedded mode) on free ports."""

    def start(**extra: str) -> Stack:
        dashboard_port, orchestration_port = free_port(), free_port()
        env = base_env(
            tmp_path / "data",
            TARS_DASHBOARD_PORT=str(dashboard_port),
            TARS_ORCHESTRATION_PORT=str(orchestration_port),
            **extra,
        )
        process = processes.start("tars-up", ["up"], env)
        stack = Stack(
            dashboard_url=f"http://127.0.0.1:{dashboard_port}",
            orchestration_url=f"http://127.0.0.1:{orchestration_port}",
            env=env,
            data_dir=tmp_path / "data",
        )
        wait_healthy(stack.dashboard_url, process)
        wait_healthy(stack.orchestration_url, process)
        return stack

    return start
