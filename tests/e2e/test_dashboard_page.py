"""The dashboard page, used as an operator would: log in, then watch a run and evaluations arrive live."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Frame, Response, expect

from tests.conftest import PASSWORD
from tests.e2e.conftest import Stack

EVALUATION_EPISODES = 3  # TARS_EVALUATION_EPISODES in the stack's environment
TRAINING_TIMEOUT_MS = 40_000  # 10 dqn episodes, child-process spawn included, take about 10 s


@pytest.mark.browser
@pytest.mark.slow
def test_operator_watches_a_run_and_evaluations_arrive_without_reloading(
    embedded_stack: Callable[..., Stack], browser: Browser, tmp_path: Path
) -> None:
    stack = embedded_stack()
    stack.create_user("olivia", "operator")

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(10_000)
    script_errors: list[str] = []

    def uncaught(error: Error) -> None:
        script_errors.append(f"uncaught: {error}")

    page.on("pageerror", uncaught)

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            script_errors.append(f"console.error: {message.text}")

    page.on("console", console)
    failed_responses: list[str] = []
    static_files: list[str] = []

    def responded(response: Response) -> None:
        if not response.ok:
            failed_responses.append(f"{response.status} {response.url}")
        if "/static/" in response.url:
            static_files.append(response.url)

    page.on("response", responded)
    navigations: list[str] = []

    def navigated(frame: Frame) -> None:
        if frame == page.main_frame:
            navigations.append(frame.url)

    page.on("framenavigated", navigated)

    try:
        page.goto(stack.dashboard_url + "/")
        expect(page.locator("#login-view")).to_be_visible()
        expect(page.locator("#dashboard-view")).to_be_hidden()

        page.get_by_label("Username").fill("olivia")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()

        expect(page.locator("#dashboard-view")).to_be_visible()
        expect(page.locator("#login-view")).to_be_hidden()
        expect(page.locator("#user")).to_have_text("olivia")
        expect(page.locator("#connection")).to_have_text("connected")
        # Anything that replaces the document (a reload, a form posted the old way) drops this marker.
        page.evaluate("window.__tarsSameDocument = true")
        navigations_after_login = len(navigations)

        headers = stack.token("olivia")
        started = httpx.post(
            f"{stack.orchestration_url}/api/v1/train",
            json={"agent_id": "dqn", "episodes": 10},
            headers=headers,
            timeout=10,
        )
        assert started.status_code in (200, 201, 202), started.text
        run_id = started.json()["run_id"]
        submitted = httpx.post(
            f"{stack.dashboard_url}/api/v1/evaluations",
            json={"agent_id": "ppo", "environment": "CartPole-v1", "reward": 150},
            headers=headers,
            timeout=10,
        )
        assert submitted.status_code == 201, submitted.text
        evaluation_id = submitted.json()["id"]

        # The submitted evaluation arrives at once, with its reward to two decimals.
        ppo_row = page.locator(f"#evaluations tbody tr[data-evaluation-id='{evaluation_id}']")
        expect(ppo_row).to_have_count(1)
        expect(ppo_row).to_contain_text("ppo")
        expect(ppo_row).to_contain_text("CartPole-v1")
        expect(ppo_row).to_contain_text("150.00")

        # The run shows up, trains to the end, and is marked succeeded with every episode done.
        run_row = page.locator(f"#runs tbody tr[data-run-id='{run_id}']")
        expect(run_row).to_have_count(1)
        expect(run_row).to_contain_text("dqn")
        expect(run_row).to_contain_text("succeeded", timeout=TRAINING_TIMEOUT_MS)
        expect(run_row).to_contain_text("10/10")

        # Its evaluation episodes are listed, each naming the run.
        run_evaluations = page.locator("#evaluations tbody tr").filter(has_text=run_id[:8])
        expect(run_evaluations).to_have_count(EVALUATION_EPISODES)
        for index in range(EVALUATION_EPISODES):
            expect(run_evaluations.nth(index)).to_contain_text("dqn")

        expect(page.locator("#runs tbody tr")).to_have_count(1)
        expect(page.locator("#evaluations tbody tr")).to_have_count(EVALUATION_EPISODES + 1)
        expect(page.locator("#connection")).to_have_text("connected")
        assert page.evaluate("window.__tarsSameDocument") is True, "the page was reloaded"
        assert len(navigations) == navigations_after_login, f"the page navigated: {navigations}"
        assert failed_responses == []
        assert script_errors == []
        # Every module and the style sheet by the digest of its content, so no stale copy is ever run.
        assert len(static_files) >= 10, static_files
        assert all(re.search(r"/static/[a-z-]+\.(js|css)\?v=[0-9a-f]{16}$", url) for url in static_files), static_files
    finally:
        screenshot = os.environ.get("TARS_E2E_SCREENSHOT") or str(tmp_path / "dashboard.png")
        with contextlib.suppress(Error):
            page.screenshot(path=screenshot, full_page=True)
        context.close()


@pytest.mark.browser
def test_wrong_password_is_shown_on_the_form(embedded_stack: Callable[..., Stack], browser: Browser) -> None:
    stack = embedded_stack()
    stack.create_user("olivia", "viewer")
    page = browser.new_page()
    page.goto(stack.dashboard_url + "/")
    page.fill("input[name=username]", "olivia")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("incorrect username or password")
    expect(page.locator("#dashboard-view")).to_be_hidden()


@pytest.mark.browser
def test_the_page_renews_its_short_lived_token_and_logout_ends_the_session_on_the_server(
    embedded_stack: Callable[..., Stack], browser: Browser
) -> None:
    stack = embedded_stack()
    stack.create_user("olivia", "viewer")
    page = browser.new_page()
    page.set_default_timeout(10_000)
    page.goto(stack.dashboard_url + "/")
    page.fill("input[name=username]", "olivia")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#connection")).to_have_text("connected")
    first_refresh = page.evaluate("sessionStorage.getItem('tars.refresh')")
    assert first_refresh and first_refresh.startswith("rt.")

    # The access token runs out (made to look expired: the page renews before sending it).
    page.evaluate(
        """() => {
        const [header, , signature] = sessionStorage.getItem('tars.token').split('.');
        const claims = {name: 'olivia', role: 'viewer', exp: Math.floor(Date.now() / 1000) - 5};
        const body = btoa(JSON.stringify(claims)).replace(/=+$/, '').replace(/\\+/g, '-').replace(/\\//g, '_');
        sessionStorage.setItem('tars.token', `${header}.${body}.${signature}`);
    }"""
    )
    with page.expect_response(lambda r: r.url.endswith("/api/v1/auth/refresh")) as renewal:
        page.click("nav a[data-route=evaluations]")
    assert renewal.value.status == 200
    expect(page.locator("#evaluations-page")).to_be_visible()
    expect(page.locator("#dashboard-view")).to_be_visible()
    renewed_refresh = page.evaluate("sessionStorage.getItem('tars.refresh')")
    assert renewed_refresh != first_refresh  # rotated
    token = page.evaluate("sessionStorage.getItem('tars.token')")
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{stack.dashboard_url}/api/v1/agents", headers=headers).status_code == 200

    # Logging out ends the session on the server: neither token works afterwards, anywhere.
    page.click("#logout")
    expect(page.locator("#login-view")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('tars.refresh')") is None
    assert httpx.get(f"{stack.dashboard_url}/api/v1/agents", headers=headers).status_code == 401
    refused = httpx.post(f"{stack.dashboard_url}/api/v1/auth/refresh", json={"refresh_token": renewed_refresh})
    assert refused.status_code == 401
