from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.e2e.conftest import TARS, Processes, Stack
from tests.waiting import eventually

# Fields of the run record `tars train --json` prints that scripts read (it has the API's others too).
SUMMARY_FIELDS = {"run_id", "status", "agent_id", "environment", "timesteps_done", "episodes_done", "error"}


def logged_in(stack: Stack) -> list[str]:
    """An operator logged in for the CLI; the --url the CLI needs."""
    stack.create_user("trainer", "operator")
    url = ["--url", stack.orchestration_url]
    login = stack.tars("login", "-u", "trainer", "--password-stdin", *url, input=PASSWORD)
    assert login.returncode == 0, login.stderr
    return url


def in_terminal(stack: Stack, *args: str, timeout: float = 120) -> tuple[int, str]:
    """`tars *args` with a pseudo-terminal for its stdin, stdout and stderr, as a person runs it;
    its exit status and everything it wrote to the terminal."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))  # rows, columns
    env = {**stack.env, "TERM": "xterm-256color"}
    for variable in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        env.pop(variable, None)  # a terminal is what it has to find out for itself
    process = subprocess.Popen([*TARS, *args], stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    written = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            readable, _, _ = select.select([leader], [], [], 0.5)
            if not readable:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed its end of the terminal
                break
            if not chunk:
                break
            written += chunk
        returncode = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
    return returncode, written.decode(errors="replace")


def screen_lines(output: str) -> list[str]:
    """What a terminal showed, one redrawn line (or line) at a time, without colours and cursor moves."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
    return [line.strip() for line in re.split(r"[\r\n]+", plain) if line.strip()]


@pytest.mark.slow
def test_train_follows_a_run_to_its_evaluation_summary(embedded_stack: Callable[..., Stack]) -> None:
    stack = embedded_stack()
    url = logged_in(stack)
    result = stack.tars("train", "ppo", "--env", "CartPole-v1", "--episodes", "5", *url)
    assert result.returncode == 0, result.stderr
    # Not a terminal: a line when it is queued, one when it trains (unless it was over before it was
    # seen training), the result; no bar, no line per check.
    queued, *running, succeeded = result.stdout.splitlines()
    run_id = queued.split()[1]
    assert queued == f"run {run_id} queued"
    assert len(running) <= 1 and all(line.startswith(f"run {run_id} running on ") for line in running), running
    assert re.fullmatch(
        rf"run {run_id} succeeded: [\d,]+ timesteps, 5 episodes, mean reward [\d.,-]+ over 3 evaluation episodes "
        r"in [\d.,]+ s",
        succeeded,
    ), succeeded
    assert "HTTP Request:" not in result.stderr  # httpx's line per request: only with -v

    as_json = stack.tars("train", "ppo", "--timesteps", "256", "--json", *url)
    assert as_json.returncode == 0, as_json.stderr
    record = json.loads(as_json.stdout)  # the whole of stdout: one object and nothing else
    assert isinstance(record, dict) and record.keys() >= SUMMARY_FIELDS
    assert (record["status"], record["agent_id"], record["environment"]) == ("succeeded", "ppo", "CartPole-v1")
    assert record["timesteps_done"] > 0 and record["episodes_done"] > 0 and record["error"] is None
    assert record["evaluation"]["episodes"] == 3 and record["mean_reward"] == record["evaluation"]["mean_reward"]
    assert record["duration_seconds"] > 0 and isinstance(record["last_reward"], float)
    assert "rewards" not in record  # one reward per episode: the API has them
    assert as_json.stderr == ""
    queued_json = stack.tars("train", "ppo", "--episodes", "1", "--no-wait", "--json", *url)
    assert queued_json.returncode == 0, queued_json.stderr
    assert json.loads(queued_json.stdout)["status"] in ("queued", "running")
    verbose = stack.tars("-v", "train", "ppo", "--episodes", "2", "--no-wait", "--url", stack.orchestration_url)
    assert verbose.returncode == 0 and "HTTP Request: POST" in verbose.stderr
    refused = stack.tars("train", "ddpg", "--env", "CartPole-v1", "--url", stack.orchestration_url)
    assert refused.returncode == 1
    assert "environment: ddpg needs a continuous action space" in refused.stderr


@pytest.mark.slow
def test_train_shows_a_live_progress_bar_on_a_terminal(
    embedded_stack: Callable[..., Stack], processes: Processes
) -> None:
    stack = embedded_stack()
    url = logged_in(stack)
    returncode, output = in_terminal(stack, "train", "ppo", "--timesteps", "4096", *url)
    lines = screen_lines(output)
    assert returncode == 0, output
    run_id = lines[0].split()[1]
    assert lines[0] == f"run {run_id} queued"
    frames = [
        tuple(int(number.replace(",", "")) for number in found.groups())
        for line in lines
        if (found := re.search(r"([\d,]+)/4,096 timesteps ([\d,]+) episodes", line))
    ]
    shown = {done for done, _ in frames}
    assert any(0 < done < 4096 for done in shown), lines  # the bar moved while the run trained
    assert any(episodes > 0 for _, episodes in frames), lines
    assert any(re.search(r"last reward [\d.,-]+ [\d,]+ steps/s", line) for line in lines), lines
    assert re.fullmatch(rf"run {run_id} succeeded: [\d,]+ timesteps, .* in [\d.,]+ s", lines[-1]), lines[-1]
    assert "HTTP Request" not in output and " INFO " not in output
    # Fed by the live feed: the bar moved more often than the run was read (once when the feed had
    # subscribed, once for the final record).
    reads = processes.log("tars-up").count(f'"GET /api/v1/runs/{run_id} HTTP')
    assert 1 <= reads <= 2 and len(shown) > reads, (reads, sorted(shown))


@pytest.mark.slow
def test_train_exits_1_on_a_run_that_fails_saying_why(embedded_stack: Callable[..., Stack]) -> None:
    stack = embedded_stack()
    url = logged_in(stack)
    trained = stack.tars("train", "ppo", "--episodes", "1", "--json", *url)
    assert trained.returncode == 0, trained.stderr
    source = json.loads(trained.stdout)["run_id"]
    checkpoints = list((stack.data_dir / "artifacts" / "runs" / source).glob("**/model.zip"))
    assert checkpoints
    for checkpoint in checkpoints:
        checkpoint.unlink()  # the artifact store lost it: continuing from it fails in the worker
    failed = stack.tars("train", "ppo", "--episodes", "1", "--from-run", source, *url)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    run_id = failed.stdout.split()[1]
    result = failed.stderr.strip().splitlines()[-1]
    assert result.startswith(f"run {run_id} failed: ") and "model.zip" in result, failed.stderr
    assert "succeeded" not in failed.stdout
    as_json = stack.tars("train", "ppo", "--episodes", "1", "--from-run", source, "--json", *url)
    assert as_json.returncode == 1
    record = json.loads(as_json.stdout)
    assert record["status"] == "failed" and "model.zip" in record["error"]


@pytest.mark.slow
def test_train_reads_the_run_without_the_feed_and_gives_up_when_nothing_answers(
    embedded_stack: Callable[..., Stack],
) -> None:
    stack = embedded_stack()
    url = logged_in(stack)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections to it are refused
        nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"
        unfed = stack.tars("train", "ppo", "--timesteps", "256", "--dashboard-url", nowhere, *url)
    assert unfed.returncode == 0, unfed.stderr
    assert "succeeded: " in unfed.stdout.splitlines()[-1]
    assert "the live feed is out of reach: checking run" in unfed.stderr

    give_up_after = 3.0
    following = subprocess.Popen(
        [*TARS, "train", "dqn", "--episodes", "100000", "--give-up-after", str(give_up_after), *url],
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        headers = stack.token("trainer")

        def followed_longer_than_it_waits() -> bool:
            # The feed worked for longer than the CLI waits for an answer: it counts from when the
            # feed was lost, not from when it last had to ask.
            runs = httpx.get(f"{stack.orchestration_url}/api/v1/runs?status=running", headers=headers).json()
            started = [datetime.fromisoformat(run["started_at"]) for run in runs["items"]]
            return bool(started) and (datetime.now(UTC) - started[0]).total_seconds() > 2 * give_up_after

        eventually(followed_longer_than_it_waits, 60, interval=0.1, message="the followed run to train a while")
        os.killpg(stack.services["tars-up"].pid, signal.SIGKILL)  # the services and their training child
        killed = time.monotonic()
        stdout, stderr = following.communicate(timeout=60)
        waited = time.monotonic() - killed
    finally:
        if following.poll() is None:
            following.kill()
            following.communicate()
    assert following.returncode == 3, stdout + stderr
    assert waited >= give_up_after
    run_id = stdout.split()[1]
    assert f"lost track of run {run_id}: " in stderr and "may still be going on" in stderr


@pytest.mark.slow
def test_train_by_timesteps_and_cancel(embedded_stack: Callable[..., Stack]) -> None:
    stack = embedded_stack()
    url = logged_in(stack)
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
    url = logged_in(stack)
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
    assert re.search(rf"^run {run_id} cancelled after [\d,]+ timesteps, [\d,]+ episodes?", stderr, re.M), stderr
