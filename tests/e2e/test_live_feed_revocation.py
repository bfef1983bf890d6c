"""A running `tars up` ends live-feed connections whose credential is revoked: the page signs out
and says why, and the Python client stops — whether the API revoked it or another process did
(`tars apikeys revoke`, which reaches the service through the data directory)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tars.client.live import AccessRevoked, ReconnectingWebSocketClient, State
from tests.conftest import PASSWORD
from tests.e2e.conftest import Stack
from tests.waiting import eventually_async


@pytest.mark.browser
def test_the_page_of_a_deactivated_user_signs_out_and_says_why(
    embedded_stack: Callable[..., Stack], browser: Browser
) -> None:
    stack = embedded_stack()
    stack.create_user("olivia", "viewer")
    stack.create_user("ada", "admin")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(stack.dashboard_url + "/")
        page.get_by_label("Username").fill("olivia")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#connection")).to_have_text("connected")

        admin = stack.token("ada")
        users = httpx.get(f"{stack.dashboard_url}/api/v1/users", headers=admin, timeout=10).json()["items"]
        olivia = next(user for user in users if user["username"] == "olivia")
        deactivated = httpx.patch(
            f"{stack.dashboard_url}/api/v1/users/{olivia['id']}", json={"active": False}, headers=admin, timeout=10
        )
        assert deactivated.status_code == 200, deactivated.text

        expect(page.locator("#login-view")).to_be_visible(timeout=5_000)
        expect(page.locator("#login-error")).to_have_text(
            "Signed out: access revoked (this account has been deactivated)."
        )
        expect(page.locator("#dashboard-view")).to_be_hidden()
        assert page.evaluate("window.tarsLive") is None  # stopped, not reconnecting
        assert page.evaluate("sessionStorage.getItem('tars.token')") is None
    finally:
        context.close()


def test_a_key_revoked_from_the_command_line_stops_the_python_client(embedded_stack: Callable[..., Stack]) -> None:
    stack = embedded_stack()
    stack.create_user("olivia", "viewer")
    created = stack.tars("apikeys", "create", "--user", "olivia", "--role", "viewer")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    ws_url = stack.dashboard_url.replace("http://", "ws://") + "/ws"

    async def scenario() -> AccessRevoked:
        client = ReconnectingWebSocketClient(ws_url, key, ["runs"])
        running = asyncio.create_task(client.run())
        await eventually_async(lambda: client.state is State.CONNECTED, message="the client to connect")
        revoked = await asyncio.to_thread(stack.tars, "apikeys", "revoke", key[:17])
        assert revoked.returncode == 0, revoked.stderr
        with pytest.raises(AccessRevoked) as raised:
            await asyncio.wait_for(running, 5)
        assert client.state is State.DISCONNECTED
        return raised.value

    ended = asyncio.run(scenario())
    assert (ended.code, ended.reason) == (4401, "this API key has been revoked")
