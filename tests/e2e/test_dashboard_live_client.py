"""The page's ReconnectingWebSocketClient (static/live.js) in Chromium, against a scripted server.

The page loads the real module; `window.WebSocket` is a fake whose server side the test drives
frame by frame, and Playwright's clock stands in for the timers, so backoff, heartbeat and give-up
are checked to the millisecond without waiting for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.e2e.conftest import harness_page

# A WebSocket whose other end is the test: accept(), deliver(frame), drop(code, reason).
FAKE_WEBSOCKET = """
class FakeWebSocket {
  constructor(url) {
    this.url = url;
    this.readyState = FakeWebSocket.CONNECTING;
    this.sent = [];
    this.closedBy = null;
    FakeWebSocket.sockets.push(this);
  }
  send(text) {
    if (this.readyState !== FakeWebSocket.OPEN) throw new Error("send on a socket that is not open");
    this.sent.push(JSON.parse(text));
  }
  close(code = 1000, reason = "") {
    if (this.readyState >= FakeWebSocket.CLOSING) return;
    this.readyState = FakeWebSocket.CLOSED;
    this.closedBy = { side: "client", code, reason };
    setTimeout(() => this.onclose && this.onclose({ code, reason }), 0);
  }
  accept() {
    this.readyState = FakeWebSocket.OPEN;
    this.onopen && this.onopen({});
  }
  deliver(frame) {
    this.onmessage && this.onmessage({ data: JSON.stringify(frame) });
  }
  drop(code = 1006, reason = "") {
    this.readyState = FakeWebSocket.CLOSED;
    this.closedBy = { side: "server", code, reason };
    this.onclose && this.onclose({ code, reason });
  }
}
Object.assign(FakeWebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3, sockets: [] });
window.WebSocket = FakeWebSocket;
window.sockets = FakeWebSocket.sockets;
window.socket = () => FakeWebSocket.sockets[FakeWebSocket.sockets.length - 1];
// Math.random() returns this, so the jittered delays are known.
window.randomValue = 0.5;
Math.random = () => window.randomValue;
"""

HARNESS = """<!doctype html>
<script type="module">
import { ReconnectingWebSocketClient } from "/static/live.js";
window.hooks = [];
window.client = new ReconnectingWebSocketClient({
  url: "ws://dashboard.test/ws",
  token: "the-token",
  channels: ["runs", "evaluations"],
  onEvent: (frame) => hooks.push(["event", frame.channel, frame.id ?? null]),
  onReset: (channel, cause) => hooks.push(["reset", channel, cause]),
  onStateChange: (state, attempt) => hooks.push(["state", state, attempt]),
  onUnauthenticated: () => hooks.push(["unauthenticated"]),
  onRevoked: (reason, code) => hooks.push(["revoked", code, reason]),
});
window.harnessReady = true;
</script>
"""

HEARTBEAT = {"interval": 30, "timeout": 10}
START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    def prepare(page: Page) -> None:
        page.add_init_script(FAKE_WEBSOCKET)
        page.clock.install(time=START)

    with harness_page(browser, HARNESS, prepare) as page:
        assert page.evaluate("window.harnessReady") is True
        # From here on, time moves only when the test says so: from a second past the page's own
        # clock, however long loading took (pausing in the past fails; a loaded CI machine took > 1 s).
        page.clock.pause_at(page.evaluate("Date.now()") + 1000)
        yield page


def js(page: Page, expression: str, argument: Any = None) -> Any:
    return page.evaluate(expression, argument)


def sent(page: Page, index: int = -1) -> list[dict[str, Any]]:
    return js(page, "(i) => sockets.at(i).sent", index)


def deliver(page: Page, frame: dict[str, Any]) -> None:
    js(page, "(frame) => socket().deliver(frame)", frame)


def hooks(page: Page) -> list[list[Any]]:
    return js(page, "hooks")


def clear_hooks(page: Page) -> None:
    js(page, "hooks.length = 0")


def state(page: Page) -> tuple[str, int]:
    return tuple(js(page, "[client.state, client.attempt]"))  # type: ignore[return-value]


def connect(page: Page, answers: dict[str, int | None], *, heartbeat: dict[str, float] = HEARTBEAT) -> None:
    """Accepts the newest socket, authenticates it and confirms its subscriptions."""
    js(page, "socket().accept()")
    deliver(page, {"type": "authenticated", "user": "olivia", "heartbeat": heartbeat})
    for channel, last_event_id in answers.items():
        frame: dict[str, Any] = {"type": "subscribed", "channel": channel}
        if last_event_id is not None:
            frame["last_event_id"] = last_event_id
        deliver(page, frame)


def event(channel: str, event_id: int | None, name: str = "run.progress") -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "event", "channel": channel, "event": name, "data": {"run_id": "r1"}}
    if event_id is not None:
        frame["id"] = event_id
    return frame


def settle(page: Page) -> None:
    """Lets timers that are due now (a close event the fake posts) run."""
    page.clock.run_for(1)


@pytest.mark.browser
def test_authenticates_first_and_is_connected_once_every_channel_is_confirmed(page: Page) -> None:
    js(page, "client.start()")
    assert state(page) == ("connecting", 0)
    js(page, "socket().accept()")
    assert sent(page) == [{"type": "auth", "token": "the-token"}]

    deliver(page, {"type": "authenticated", "user": "olivia", "heartbeat": HEARTBEAT})
    # Nothing seen yet on either channel: no last_event_id, and the page must load both from REST.
    assert sent(page)[1:] == [{"type": "subscribe", "channel": "runs"}, {"type": "subscribe", "channel": "evaluations"}]
    deliver(page, {"type": "subscribed", "channel": "runs", "last_event_id": 41})
    assert state(page) == ("connecting", 0)
    deliver(page, {"type": "subscribed", "channel": "evaluations", "last_event_id": 7})
    assert state(page) == ("connected", 0)
    assert js(page, "client.lastEventIds") == {"runs": 41, "evaluations": 7}
    assert hooks(page) == [
        ["state", "connecting", 0],
        ["reset", "runs", "first-subscription"],
        ["reset", "evaluations", "first-subscription"],
        ["state", "connected", 0],
    ]


@pytest.mark.browser
def test_events_apply_once_in_order_and_a_gap_reloads_the_channel(page: Page) -> None:
    js(page, "client.start()")
    connect(page, {"runs": 41, "evaluations": 7})
    clear_hooks(page)

    for frame in (event("runs", 42), event("runs", 42), event("runs", 40), event("runs", 43), event("evaluations", 8)):
        deliver(page, frame)
    assert hooks(page) == [["event", "runs", 42], ["event", "runs", 43], ["event", "evaluations", 8]]
    assert js(page, "client.stats.duplicates") == 2

    clear_hooks(page)
    deliver(page, event("runs", 46))  # 44 and 45 never came
    assert hooks(page) == [["event", "runs", 46], ["reset", "runs", "gap"]]
    assert js(page, "client.lastEventIds") == {"runs": 46, "evaluations": 8}


@pytest.mark.browser
def test_reconnects_within_250_ms_and_resumes_each_channel_from_its_last_id(page: Page) -> None:
    js(page, "client.start()")
    connect(page, {"runs": 41, "evaluations": 7})
    deliver(page, event("runs", 42))
    clear_hooks(page)

    js(page, "window.randomValue = 0.999")
    js(page, "socket().drop(1006)")
    assert state(page) == ("reconnecting", 1)
    assert 0 <= js(page, "client.nextRetryDelayMs") < 250
    assert js(page, "sockets.length") == 1
    page.clock.run_for(250)
    assert js(page, "sockets.length") == 2

    js(page, "socket().accept()")
    deliver(page, {"type": "authenticated", "user": "olivia", "heartbeat": HEARTBEAT})
    assert sent(page)[1:] == [
        {"type": "subscribe", "channel": "runs", "last_event_id": 42},
        {"type": "subscribe", "channel": "evaluations", "last_event_id": 7},
    ]
    deliver(page, {"type": "subscribed", "channel": "runs", "last_event_id": 42})
    deliver(page, event("runs", 43))  # replayed
    deliver(page, {"type": "subscribed", "channel": "evaluations", "last_event_id": 7})
    # The server resumed where we were: nothing to reload.
    assert hooks(page) == [["state", "reconnecting", 1], ["event", "runs", 43], ["state", "connected", 0]]
    assert js(page, "client.lastEventIds") == {"runs": 43, "evaluations": 7}


@pytest.mark.browser
def test_a_reset_makes_the_page_reload_that_channel_and_continue_from_the_new_id(page: Page) -> None:
    js(page, "client.start()")
    connect(page, {"runs": 41, "evaluations": 7})
    js(page, "socket().drop(1006)")
    page.clock.run_for(250)
    clear_hooks(page)

    js(page, "socket().accept()")
    deliver(page, {"type": "authenticated", "user": "olivia", "heartbeat": HEARTBEAT})
    deliver(page, {"type": "reset", "channel": "runs"})
    deliver(page, {"type": "subscribed", "channel": "runs", "last_event_id": 1795000004211})
    deliver(page, {"type": "subscribed", "channel": "evaluations", "last_event_id": 7})
    deliver(page, event("runs", 1795000004211))  # already in what the reload shows
    deliver(page, event("runs", 1795000004212))
    assert hooks(page) == [
        ["reset", "runs", "reset"],
        ["state", "connected", 0],
        ["event", "runs", 1795000004212],
    ]
    assert js(page, "client.stats.resets") == 1


@pytest.mark.browser
def test_a_silent_server_is_left_after_interval_plus_timeout(page: Page) -> None:
    js(page, "client.start()")
    connect(page, {"runs": 1, "evaluations": 1}, heartbeat={"interval": 2, "timeout": 1})

    page.clock.run_for(2_900)
    deliver(page, {"type": "ping"})
    assert sent(page)[-1] == {"type": "pong"}
    page.clock.run_for(2_900)  # 2.9 s since the ping: still within 3 s
    assert js(page, "socket().closedBy") is None
    assert state(page) == ("connected", 0)

    page.clock.run_for(200)
    assert js(page, "socket().closedBy.side") == "client"
    assert state(page) == ("reconnecting", 1)
    page.clock.run_for(250)
    assert js(page, "sockets.length") == 2


@pytest.mark.browser
def test_backoff_doubles_up_to_30_s_and_gives_up_after_10_attempts_until_retried(page: Page) -> None:
    js(page, "window.randomValue = 0.999999")
    js(page, "client.start()")
    js(page, "socket().drop(1006)")  # the server is down: every attempt fails
    delays = []
    for attempt in range(1, 11):
        assert state(page) == ("reconnecting", attempt)
        delay = js(page, "client.nextRetryDelayMs")
        delays.append(round(delay))
        page.clock.run_for(int(delay) + 1)
        assert js(page, "sockets.length") == attempt + 1
        js(page, "socket().drop(1006)")
    assert delays == [250, 500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]
    assert state(page) == ("disconnected", 10)

    page.clock.run_for(120_000)
    assert js(page, "sockets.length") == 11, "it went on trying after giving up"

    js(page, "client.retry()")
    assert state(page) == ("connecting", 0)
    assert js(page, "sockets.length") == 12
    connect(page, {"runs": 1, "evaluations": 1})
    assert state(page) == ("connected", 0)


@pytest.mark.browser
def test_jitter_spreads_retries_between_zero_and_the_ceiling(page: Page) -> None:
    js(page, "window.randomValue = 0")
    js(page, "client.start()")
    js(page, "socket().drop(1006)")
    assert js(page, "client.nextRetryDelayMs") == 0
    settle(page)
    assert js(page, "sockets.length") == 2


@pytest.mark.browser
def test_a_refused_token_stops_the_client_and_asks_for_a_login(page: Page) -> None:
    js(page, "client.start()")
    js(page, "socket().accept()")
    deliver(page, {"type": "error", "message": "invalid or expired token"})
    js(page, "socket().drop(1008, 'unauthenticated')")
    assert state(page) == ("disconnected", 0)
    assert hooks(page)[-2:] == [["state", "disconnected", 0], ["unauthenticated"]]
    page.clock.run_for(120_000)
    assert js(page, "sockets.length") == 1
    js(page, "client.retry()")  # the same token would be refused again
    assert js(page, "sockets.length") == 1


@pytest.mark.browser
def test_a_revoked_credential_stops_the_client_which_reports_it(page: Page) -> None:
    js(page, "client.start()")
    connect(page, {"runs": 5, "evaluations": 9})
    clear_hooks(page)
    js(page, "socket().drop(4401, 'this API key has been revoked')")
    assert state(page) == ("disconnected", 0)
    assert hooks(page) == [["state", "disconnected", 0], ["revoked", 4401, "this API key has been revoked"]]
    assert js(page, "client.revoked") == {"code": 4401, "reason": "this API key has been revoked"}
    page.clock.run_for(120_000)
    assert js(page, "sockets.length") == 1  # never reconnected
    js(page, "client.retry()")  # the revoked credential would only be refused
    assert js(page, "sockets.length") == 1


@pytest.mark.browser
def test_an_expired_token_reconnects_at_once_without_spending_an_attempt(page: Page) -> None:
    js(page, "client.start()")
    connect(page, {"runs": 5, "evaluations": 9})
    clear_hooks(page)
    js(page, "window.randomValue = 0.999")
    js(page, "socket().drop(4440, 'the access token has expired; renew it and connect again')")
    assert state(page) == ("reconnecting", 1)
    assert js(page, "client.nextRetryDelayMs") == 0
    settle(page)
    assert js(page, "sockets.length") == 2
    connect(page, {"runs": 5, "evaluations": 9})
    assert [frame.get("last_event_id") for frame in sent(page)[1:]] == [5, 9]  # resumed, nothing reloaded
    assert hooks(page) == [["state", "reconnecting", 1], ["state", "connected", 0]]


@pytest.mark.browser
def test_a_slow_consumer_close_reconnects_from_its_last_ids(page: Page) -> None:
    js(page, "client.start()")
    connect(page, {"runs": 5, "evaluations": 9})
    js(page, "socket().drop(1008, 'too slow; reconnect')")
    assert state(page) == ("reconnecting", 1)
    page.clock.run_for(250)
    js(page, "socket().accept()")
    deliver(page, {"type": "authenticated", "user": "olivia", "heartbeat": HEARTBEAT})
    assert [frame.get("last_event_id") for frame in sent(page)[1:]] == [5, 9]


@pytest.mark.browser
def test_channels_added_later_are_subscribed_and_removed_ones_forgotten(page: Page) -> None:
    js(page, "client.start()")
    connect(page, {"runs": 1, "evaluations": 1})
    js(page, "client.subscribe('agent:dqn')")
    assert sent(page)[-1] == {"type": "subscribe", "channel": "agent:dqn"}
    deliver(page, {"type": "subscribed", "channel": "agent:dqn", "last_event_id": 12})
    deliver(page, event("agent:dqn", 13))
    js(page, "client.unsubscribe('agent:dqn')")
    assert sent(page)[-1] == {"type": "unsubscribe", "channel": "agent:dqn"}
    deliver(page, {"type": "unsubscribed", "channel": "agent:dqn"})
    assert js(page, "client.lastEventIds") == {"runs": 1, "evaluations": 1}
    assert state(page) == ("connected", 0)


@pytest.mark.browser
def test_a_server_without_event_ids_still_works_by_reloading_on_every_reconnect(page: Page) -> None:
    js(page, "client.start()")
    connect(page, {"runs": None, "evaluations": None})
    deliver(page, event("runs", None))
    deliver(page, event("runs", None))
    js(page, "socket().drop(1006)")
    page.clock.run_for(250)
    clear_hooks(page)
    connect(page, {"runs": None, "evaluations": None})
    assert sent(page)[1:] == [{"type": "subscribe", "channel": "runs"}, {"type": "subscribe", "channel": "evaluations"}]
    assert hooks(page) == [
        ["reset", "runs", "first-subscription"],
        ["reset", "evaluations", "first-subscription"],
        ["state", "connected", 0],
    ]


@pytest.mark.browser
def test_an_announced_restart_is_ridden_out_with_quick_retries_for_30_s_then_backoff_resumes(page: Page) -> None:
    js(page, "window.randomValue = 0.999")
    js(page, "client.start()")
    connect(page, {"runs": 1, "evaluations": 1})
    js(page, "socket().drop(1012, 'service restart')")  # uvicorn shutting down
    elapsed = 0
    while elapsed < 30_000:
        # Every retry within 250 ms, and none of them counts against the ten attempts.
        assert state(page) == ("reconnecting", 1)
        delay = js(page, "client.nextRetryDelayMs")
        assert 0 <= delay < 250
        page.clock.run_for(int(delay) + 1)
        elapsed += int(delay) + 1
        js(page, "socket().drop(1006)")  # not back yet
    # Past the window: ordinary exponential backoff from the next attempt on.
    assert state(page) == ("reconnecting", 2)
    assert 250 < js(page, "client.nextRetryDelayMs") <= 500

    page.clock.run_for(500)
    connect(page, {"runs": 1, "evaluations": 1})
    assert state(page) == ("connected", 0)
    # A restart announced while the client was not connected is not a reason for quick retries.
    js(page, "socket().drop(1006)")
    page.clock.run_for(250)
    js(page, "socket().drop(1012)")
    assert state(page) == ("reconnecting", 2)
