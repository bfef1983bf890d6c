"""The dashboard page in a real browser: it shows runs and evaluations arriving, without a reload."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.conftest import PASSWORD
from tests.e2e.conftest import Stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
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
    if not os.path.exists(CHROMIUM):
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.mark.browser
@pytest.mark.slow
def test_page_shows_runs_and_evaluations_live(embedded_stack: Callable[..., Stack], browser: Browser) -> None:
    stack = embedded_stack()
    stack.create_user("olivia", "operator")
    page = browser.new_page()
    page.goto(stack.dashboard_url + "/")
    page.fill("input[name=username]", "olivia")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#connection")).to_have_text("connected", timeout=10_000)
    page.evaluate("window.__sameDocument = true")

    headers = stack.token("olivia")
    run_id = httpx.post(
        f"{stack.orchestration_url}/api/v1/train", json={"agent_id": "dqn", "episodes": 10}, headers=headers
    ).json()["run_id"]
    created = httpx.post(
        f"{stack.dashboard_url}/api/v1/evaluations",
        json={"agent_id": "ppo", "environment": "CartPole-v1", "reward": 150},
        headers=headers,
    )
    assert created.status_code == 201

    run_row = page.locator(f"#runs tr[data-run-id='{run_id}']")
    expect(run_row).to_contain_text("succeeded", timeout=60_000)
    expect(run_row).to_contain_text("10/10")
    expect(page.locator(f"#evaluations tr[data-evaluation-id='{created.json()['id']}']")).to_contain_text("150.00")
    expect(page.locator("#evaluations tbody tr", has_text=run_id[:8])).to_have_count(3)
    assert page.evaluate("window.__sameDocument") is True
    page.screenshot(path=str(stack.data_dir / "dashboard.png"), full_page=True)


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
