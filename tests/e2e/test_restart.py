"""Embedded mode keeps no queue on disk: runs a stopped `tars up` left unfinished are taken up on restart."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import psutil
import pytest

from tests.e2e.conftest import Processes, Stack, wait_healthy
from tests.waiting import eventually


def _training_children(pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(pid).children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
def test_runs_unfinished_at_shutdown_are_taken_up_again_after_a_restart(
    embedded_stack: Callable[..., Stack], processes: Processes
) -> None:
    stack = embedded_stack(TARS_WORKER_SHUTDOWN_GRACE_SECONDS="1")
    stack.create_user("olivia", "operator")
    headers = stack.token("olivia")
    body = {"agent_id": "dqn", "episodes": 100_000}
    run_id = httpx.post(f"{stack.orchestration_url}/api/v1/train", json=body, headers=headers).json()["run_id"]
    up = processes.running[0]
    eventually(lambda: _training_children(up.pid), 60, interval=0.05, message="a training process")
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

    def taken_up_again() -> dict[str, Any] | None:
        run: dict[str, Any] = httpx.get(f"{stack.orchestration_url}/api/v1/runs/{run_id}", headers=headers).json()
        return run if run["attempts"] == 2 and run["status"] == "running" else None

    eventually(taken_up_again, 60, interval=0.1, message=f"run {run_id} running its second attempt")
