"""The dashboard page across a restart of dashboard-api, in distributed mode.

An operator starts a run from the page's form and watches it; dashboard-api is killed and started
again while the run trains. The page reconnects by itself, resumes each channel from the last event
it saw (the replay window lives in Redis, so nothing has to be reloaded), and once the run is over
it shows exactly what the REST API returns: every episode and every evaluation, none twice.
"""

from __future__ import annotations

import contextlib
import math
import re
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Error, Page, expect

from tests.conftest import PASSWORD
from tests.e2e.conftest import Processes, Stack, wait_healthy
from tests.waiting import eventually

EVALUATION_EPISODES = 3  # TARS_EVALUATION_EPISODES in the stack's environment
# Long enough that the run is still training after the restart (several seconds), short enough
# for a test: dqn's episodes on CartPole take a few dozen steps each at first.
EPISODES = 150
TRAINING_TIMEOUT_MS = 180_000
RECONNECT_TIMEOUT_MS = 60_000  # a restart takes seconds; backoff adds at most the next delay


def open_dashboard(context: BrowserContext, stack: Stack, username: str, route: str = "") -> Page:
    """A new tab on the dashboard, logged in (each tab keeps its own session) and connected."""
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{stack.dashboard_url}/{route}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#connection")).to_have_text("connected")
    return page


def eventually_equal(shown: Callable[[], object], expected: Callable[[], object], timeout: float = 30) -> None:
    """Waits until the page shows what REST returns: the last events may still be on their way."""
    seen: dict[str, object] = {}

    def same() -> bool:
        seen["page"], seen["rest"] = shown(), expected()
        return seen["page"] == seen["rest"]

    with contextlib.suppress(AssertionError):
        eventually(same, timeout, interval=0.1)
    assert seen["page"] == seen["rest"]


def shown_runs(page: Page, table: str) -> list[dict[str, Any]]:
    return page.eval_on_selector_all(
        f"{table} tbody tr",
        """rows => rows.map(row => ({
            run_id: row.dataset.runId,
            status: row.dataset.status,
            episodes_done: Number(row.dataset.episodesDone),
            timesteps_done: Number(row.dataset.timestepsDone),
        }))""",
    )


def shown_evaluations(page: Page, table: str) -> list[tuple[int, str]]:
    rows = page.eval_on_selector_all(
        f"{table} tbody tr",
        """rows => rows.map(row => [
            Number(row.dataset.evaluationId), row.querySelector('[data-field=reward]').textContent,
        ])""",
    )
    return [(evaluation_id, reward) for evaluation_id, reward in rows]


def rest_runs(stack: Stack, headers: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    items = httpx.get(f"{stack.dashboard_url}/api/v1/runs", params=query, headers=headers, timeout=10).json()["items"]
    return [{key: run[key] for key in ("run_id", "status", "episodes_done", "timesteps_done")} for run in items]


def rest_evaluations(stack: Stack, headers: dict[str, str], **query: Any) -> list[tuple[int, str]]:
    items = httpx.get(f"{stack.dashboard_url}/api/v1/evaluations", params=query, headers=headers, timeout=10).json()[
        "items"
    ]
    return [(item["id"], f"{item['reward']:.2f}") for item in items]


@pytest.mark.browser
@pytest.mark.slow
def test_page_reconnects_by_itself_after_dashboard_api_restarts_mid_run_and_ends_equal_to_rest(
    distributed_stack: Callable[..., Stack], processes: Processes, browser: Browser, tmp_path: Path
) -> None:
    stack = distributed_stack()
    stack.create_user("olivia", "operator")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    uncaught: list[str] = []
    context.on("weberror", lambda error: uncaught.append(str(error.error)))
    try:
        overview = open_dashboard(context, stack, "olivia")
        agent_page = open_dashboard(context, stack, "olivia", "#/agents/dqn")
        expect(agent_page.locator("#training-chart")).to_contain_text("No training run yet.")

        # The operator starts the run from the page's form.
        form = overview.locator("#overview-train")
        form.get_by_label("Agent").select_option("dqn")
        form.get_by_label("Stop after").fill(str(EPISODES))
        form.get_by_role("button", name="Start training").click()
        started = form.locator(".outcome a[data-run-id]")
        expect(started).to_have_count(1)
        run_id = started.get_attribute("data-run-id")
        assert run_id

        # Its progress arrives live, on both tabs.
        in_progress = overview.locator(f"#active-runs tbody tr[data-run-id='{run_id}']")
        expect(in_progress).to_have_attribute("data-status", "running", timeout=60_000)
        expect(in_progress).to_have_attribute("data-episodes-done", re.compile(r"^([3-9]|\d{2,})$"), timeout=60_000)
        expect(in_progress.locator("[data-field=last-reward]")).to_have_text(re.compile(r"^\d+\.\d$"))
        expect(agent_page.locator("#training-chart")).to_have_attribute("data-run-id", run_id)
        expect(agent_page.locator("#training-chart")).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"))

        # dashboard-api dies mid-run; both tabs notice and start reconnecting by themselves. The worker
        # is held (SIGSTOP) meanwhile, so the run is still going when dashboard-api is back however
        # fast this machine trains: what the tabs missed, and what follows, arrives live.
        worker = stack.services["worker-0"]
        worker.send_signal(signal.SIGSTOP)
        try:
            dashboard = stack.services["dashboard-api"]
            dashboard.kill()
            dashboard.wait(10)
            for page in (overview, agent_page):
                expect(page.locator("#connection")).to_have_text(re.compile(r"^reconnecting \(attempt \d+\)$"))
            restarted = processes.start("dashboard-api-restarted", ["serve", "dashboard-api"], stack.env)
            stack.services["dashboard-api"] = restarted
            wait_healthy(stack.dashboard_url, restarted)
            headers = stack.token("olivia")
            run = httpx.get(f"{stack.dashboard_url}/api/v1/runs/{run_id}", headers=headers, timeout=10).json()
            assert run["status"] == "running" and run["episodes_done"] < EPISODES, run
        finally:
            worker.send_signal(signal.SIGCONT)
        for page in (overview, agent_page):
            expect(page.locator("#connection")).to_have_text("connected", timeout=RECONNECT_TIMEOUT_MS)
            expect(page.locator("#retry")).to_be_hidden()

        # The run trains to the end and is evaluated; the page follows without a reload.
        finished = overview.locator(f"#runs tbody tr[data-run-id='{run_id}']")
        expect(finished).to_have_attribute("data-status", "succeeded", timeout=TRAINING_TIMEOUT_MS)
        expect(finished).to_contain_text(f"{EPISODES}/{EPISODES}")
        expect(overview.locator(f"#evaluations tbody tr[data-run-id='{run_id}']")).to_have_count(EVALUATION_EPISODES)
        expect(overview.locator("#active-runs tbody tr")).to_have_count(0)

        # What each tab shows is what REST returns: no gap, no duplicate.
        eventually_equal(
            lambda: (shown_runs(overview, "#runs"), shown_evaluations(overview, "#evaluations")),
            lambda: (rest_runs(stack, headers, limit=20), rest_evaluations(stack, headers, limit=20)),
        )
        assert shown_runs(overview, "#active-runs") == []

        rewards = httpx.get(f"{stack.dashboard_url}/api/v1/runs/{run_id}", headers=headers, timeout=10).json()[
            "rewards"
        ]
        assert len(rewards) == EPISODES
        chart = agent_page.locator("#training-chart")
        expect(chart).to_have_attribute("data-points", str(EPISODES))

        eventually_equal(
            lambda: (shown_runs(agent_page, "#agent-runs"), shown_evaluations(agent_page, "#agent-evaluations")),
            lambda: (
                rest_runs(stack, headers, agent_id="dqn", limit=10),
                rest_evaluations(stack, headers, agent_id="dqn", limit=100),
            ),
        )
        expect(agent_page.locator("#evaluation-chart")).to_have_attribute("data-points", str(EVALUATION_EPISODES))

        # Resumed, not reloaded: the replay window in Redis held everything the tabs missed.
        for page in (overview, agent_page):
            stats = page.evaluate("window.tarsLive.stats")
            assert stats["gaps"] == 0, stats
            assert stats["resets"] == 0, stats
            assert stats["connections"] == 2, stats
        assert uncaught == []
    finally:
        for index, page in enumerate(context.pages):
            with contextlib.suppress(Error):
                page.screenshot(path=str(tmp_path / f"dashboard-{index}.png"), full_page=True)
        context.close()


@pytest.mark.browser
@pytest.mark.slow
def test_page_gives_up_after_ten_attempts_then_retry_reloads_what_it_missed_and_a_refused_token_logs_out(
    embedded_stack: Callable[..., Stack], processes: Processes, browser: Browser
) -> None:
    stack = embedded_stack()
    stack.create_user("olivia", "operator")
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    # Fake timers, flowing with real time until paused: the backoff's minutes pass in an instant.
    page.clock.install()
    try:
        page.goto(f"{stack.dashboard_url}/")
        page.get_by_label("Username").fill("olivia")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        connection = page.locator("#connection")
        expect(connection).to_have_text("connected")
        # Held still, so that every attempt shows before the next one starts.
        page_now = datetime.fromtimestamp(page.evaluate("Date.now()") / 1000, UTC)
        page.clock.pause_at(page_now + timedelta(seconds=1))

        up = stack.services["tars-up"]
        up.kill()
        up.wait(10)
        for attempt in range(1, 11):
            expect(connection).to_have_text(f"reconnecting (attempt {attempt})")
            delay = page.evaluate("window.tarsLive.nextRetryDelayMs")
            assert 0 <= delay <= min(30_000, 250 * 2 ** (attempt - 1))
            # Exactly to the attempt: it starts last in the window, so the next one cannot start too.
            page.clock.run_for(math.ceil(delay))
        retry = page.locator("#retry")
        expect(retry).to_be_visible()
        expect(retry).to_have_text("Disconnected — Retry")
        assert page.evaluate("window.tarsLive.state") == "disconnected"
        page.clock.resume()

        # Back up, and an evaluation arrives while the page is not listening. Embedded mode kept
        # the replay window in memory, so the server resets the overview's three channels (runs,
        # evaluations, insights) and the page reloads them.
        restarted = processes.start("tars-up-restarted", ["up"], stack.env)
        stack.services["tars-up"] = restarted
        wait_healthy(stack.dashboard_url, restarted)
        headers = stack.token("olivia")
        missed = httpx.post(
            f"{stack.dashboard_url}/api/v1/evaluations",
            json={"agent_id": "ppo", "environment": "CartPole-v1", "reward": 42},
            headers=headers,
            timeout=10,
        )
        assert missed.status_code == 201, missed.text
        expect(page.locator(f"#evaluations tbody tr[data-evaluation-id='{missed.json()['id']}']")).to_have_count(0)
        retry.click()
        expect(connection).to_have_text("connected")
        expect(retry).to_be_hidden()
        expect(page.locator(f"#evaluations tbody tr[data-evaluation-id='{missed.json()['id']}']")).to_have_count(1)
        assert page.evaluate("window.tarsLive.stats.resets") == 3

        # Restarted with another signing key, the server refuses the page's token: back to the login form.
        restarted.kill()
        restarted.wait(10)
        other_key = {**stack.env, "TARS_JWT_SECRET": "another-secret-" + "y" * 40}
        again = processes.start("tars-up-other-key", ["up"], other_key)
        stack.services["tars-up"] = again
        wait_healthy(stack.dashboard_url, again)
        expect(page.locator("#login-view")).to_be_visible(timeout=RECONNECT_TIMEOUT_MS)
        expect(page.locator("#login-error")).to_have_text("Your session has ended; log in again.")
        expect(page.locator("#dashboard-view")).to_be_hidden()
        assert page.evaluate("sessionStorage.getItem('tars.token')") is None
    finally:
        context.close()
