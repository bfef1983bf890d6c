from __future__ import annotations

import subprocess
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.e2e.conftest import TARS, Stack
from tests.waiting import eventually


@pytest.mark.slow
def test_train_follows_a_run_to_its_evaluation_summary(embedded_stack: Callable[..., Stack]) -> None:
    stack = embedded_stack()
    stack.create_user("trainer", "operator")
    login = stack.tars("login", "-u", "trainer", "--password-stdin", "--url", stack.orchestration_url, input=PASSWORD)
    assert login.returncode == 0, login.stderr
    result = stack.tars("train", "ppo", "--env", "CartPole-v1", "--episodes", "5", "--url", stack.orchestration_url)
    assert result.returncode == 0, result.stderr
    assert "succeeded: 3 evaluation episodes, mean reward" in result.stdout
    assert "HTTP Request:" not in result.stderr  # httpx's line per poll: only with -v
    verbose = stack.tars("-v", "train", "ppo", "--episodes", "2", "--no-wait", "--url", stack.orchestration_url)
    assert verbose.returncode == 0 and "HTTP Request: POST" in verbose.stderr
    refused = stack.tars("train", "ddpg", "--env", "CartPole-v1", "--url", stack.orchestration_url)
    assert refused.returncode == 1
    assert "environment: ddpg needs a continuous action space" in refused.stderr


@pytest.mark.slow
def test_train_by_timesteps_and_cancel(embedded_stack: Callable[..., Stack]) -> None:
    stack = embedded_stack()
    stack.create_user("trainer", "operator")
    url = ["--url", stack.orchestration_url]
    assert stack.tars("login", "-u", "trainer", "--password-stdin", *url, input=PASSWORD).returncode == 0
    quick = stack.tars("train", "ppo", "--timesteps", "1024", *url)
    assert quick.returncode == 0, quick.stderr
    assert "succeeded" in quick.stdout
    queued = stack.tars("train", "dqn", "--episodes", "100000", "--no-wait", *url)
    run_id = queued.stdout.split()[1]
    cancelled = stack.tars("cancel", run_id, *url)
    assert cancelled.returncode == 0 and run_id in cancelled.stdout

    # A running run stops within a second; after that, cancelling again is refused.
    def cancelled_already() -> subprocess.CompletedProcess[str] | None:
        again = stack.tars("cancel", run_id, *url)
        if "already cancelled" in again.stderr:
            return again
        assert again.returncode == 0, again.stderr
        return None

    again = eventually(cancelled_already, 15, interval=0.2, message=f"run {run_id} to be cancelled")
    assert again.returncode == 1


@pytest.mark.slow
def test_train_ends_when_its_run_is_cancelled(embedded_stack: Callable[..., Stack]) -> None:
    stack = embedded_stack()
    stack.create_user("trainer", "operator")
    url = ["--url", stack.orchestration_url]
    assert stack.tars("login", "-u", "trainer", "--password-stdin", *url, input=PASSWORD).returncode == 0
    following = subprocess.Popen(
        [*TARS, "train", "dqn", "--episodes", "100000", *url],
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        headers = stack.token("trainer")

        def the_run() -> str | None:
            runs = httpx.get(f"{stack.orchestration_url}/api/v1/runs", headers=headers).json()["items"]
            return str(runs[0]["run_id"]) if runs else None

        run_id = eventually(the_run, 30, message="the run `tars train` started")
        assert stack.tars("cancel", run_id, *url).returncode == 0
        _, stderr = following.communicate(timeout=30)  # it used to follow a cancelled run forever
    finally:
        if following.poll() is None:
            following.kill()
            following.communicate()
    assert following.returncode == 1
    assert f"run {run_id} cancelled" in stderr
