"""The Python ReconnectingWebSocketClient against a real dashboard-api that restarts, goes silent
or has a twin replica."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tars.client.live import Backoff, LiveEvent, ReconnectingWebSocketClient, State, Token
from tars.domain.evaluations import NewEvaluation
from tars.services.auth.tokens import TokenService
from tars.services.runtime import Runtime
from tars.settings import Settings
from tars.storage.users import get_user_by_username
from tars.wiring.runtime import build_runtime
from tests.client.conftest import FreezableProxy, LiveServer
from tests.conftest import TEST_SECRET
from tests.waiting import eventually

FAST = Backoff(first=0.05, cap=0.2, max_attempts=200)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"ws_ping_seconds": 0.3, "ws_pong_timeout_seconds": 0.3, "clear_frequency": 50})


def token_of(runtime: Runtime, username: str = "viewer-user", *, lifetime: int | None = None) -> str:
    """An access token for ``username``, lasting the settings' lifetime or ``lifetime`` seconds."""
    tokens = runtime.security.tokens if lifetime is None else TokenService(TEST_SECRET, expires_seconds=lifetime)
    with runtime.sessions() as session:
        user = get_user_by_username(session, username)
        assert user is not None
        return tokens.issue(user).access_token


def evaluate(runtime: Runtime, reward: float) -> int:
    submission = NewEvaluation(agent_id="ppo", environment="CartPole-v1", reward=reward, region="us-west-2")
    return runtime.evaluations.store(submission).id


class Watcher:
    """Runs a client on its own event loop in a thread, recording what it sees."""

    def __init__(self, url: str, token: Token, channels: list[str], backoff: Backoff = FAST) -> None:
        self.events: list[LiveEvent] = []
        # What run() raised, if it did.
        self.failure: Exception | None = None
        self.resets: list[str] = []
        self.states: list[tuple[State, int]] = []
        self.client = ReconnectingWebSocketClient(
            url,
            token,
            channels,
            on_event=self.events.append,
            on_reset=self.resets.append,
            on_state=lambda state, attempt: self.states.append((state, attempt)),
            backoff=backoff,
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        try:
            await self.client.run()
        except Exception as exc:  # the test's to check
            self.failure = exc

    def call(self, action: Callable[[], Awaitable[None]]) -> None:
        asyncio.run_coroutine_threadsafe(action(), self._loop).result(5)

    def wait(self, condition: Callable[[], bool], timeout: float = 10) -> None:
        eventually(
            lambda: condition() or None,
            timeout,
            interval=0.01,
            message=lambda: (
                f"the watcher; states {self.states}, "
                f"events {[(e.channel, e.id, e.data.get('id')) for e in self.events]}"
            ),
        )

    def wait_connected(self) -> None:
        self.wait(lambda: self.client.state is State.CONNECTED)

    def evaluation_ids(self, channel: str = "evaluations") -> list[int]:
        return [e.data["id"] for e in self.events if e.channel == channel]

    def retry(self) -> None:
        self._loop.call_soon_threadsafe(self.client.retry)

    def close(self) -> None:
        if self._thread.is_alive():  # a client refused its token has returned already
            self.call(self.client.stop)
        self._thread.join(5)
        self._loop.close()


def test_resume_after_a_server_restart_yields_exactly_the_missed_events(
    runtime: Runtime, live_server: LiveServer
) -> None:
    watcher = Watcher(live_server.url, token_of(runtime), ["evaluations"])
    try:
        watcher.wait_connected()
        before = [evaluate(runtime, r) for r in range(3)]
        watcher.wait(lambda: len(watcher.events) == 3)
        live_server.stop()
        watcher.wait(lambda: watcher.client.state is State.RECONNECTING)
        missed = [evaluate(runtime, r) for r in range(3, 8)]  # while the dashboard is down
        live_server.start()
        watcher.wait(lambda: len(watcher.events) == 8)
        after = [evaluate(runtime, r) for r in range(8, 10)]
        watcher.wait(lambda: len(watcher.events) == 10)
        assert watcher.evaluation_ids() == before + missed + after
        ids = [e.id for e in watcher.events]
        assert ids == list(range(ids[0], ids[0] + 10))
        assert watcher.resets == []
    finally:
        watcher.close()


def test_a_forced_disconnect_loses_nothing(runtime: Runtime, live_server: LiveServer) -> None:
    watcher = Watcher(live_server.url, token_of(runtime), ["evaluations", "agent:ppo"])
    try:
        watcher.wait_connected()
        sent = []
        for reward in range(30):
            sent.append(evaluate(runtime, reward))
            if reward % 7 == 0:
                watcher.call(watcher.client.drop)
        watcher.wait(lambda: len(watcher.evaluation_ids()) == 30 and len(watcher.evaluation_ids("agent:ppo")) == 30)
        assert watcher.evaluation_ids() == sent
        assert watcher.evaluation_ids("agent:ppo") == sent
        assert any(state is State.RECONNECTING for state, _ in watcher.states)
    finally:
        watcher.close()


def test_an_id_older_than_the_window_gets_a_reset(runtime: Runtime, live_server: LiveServer) -> None:
    watcher = Watcher(live_server.url, token_of(runtime), ["evaluations"])
    try:
        watcher.wait_connected()
        evaluate(runtime, 0)
        watcher.wait(lambda: len(watcher.events) == 1)
        live_server.stop()
        for reward in range(runtime.settings.clear_frequency + 5):  # more than the window holds
            evaluate(runtime, reward)
        live_server.start()
        watcher.wait(lambda: watcher.resets == ["evaluations"] and watcher.client.state is State.CONNECTED)
        latest = evaluate(runtime, 99)
        watcher.wait(lambda: watcher.evaluation_ids()[-1:] == [latest])
        assert len(watcher.events) == 2  # nothing replayed across the reset: the owner reloads instead
    finally:
        watcher.close()


def test_a_silent_server_is_detected_and_the_client_reconnects(runtime: Runtime, live_server: LiveServer) -> None:
    proxy = FreezableProxy(live_server.port)
    watcher = Watcher(proxy.url, token_of(runtime), ["evaluations"])
    try:
        watcher.wait_connected()
        first = evaluate(runtime, 1)
        watcher.wait(lambda: watcher.evaluation_ids() == [first])
        proxy.freeze()  # no close, no error: just silence
        frozen_at = time.monotonic()
        during = evaluate(runtime, 2)
        watcher.wait(lambda: watcher.client.state is State.RECONNECTING, timeout=5)
        # Heartbeat interval 0.3 s + timeout 0.3 s, and a margin.
        assert time.monotonic() - frozen_at < 2.0
        watcher.wait(lambda: watcher.evaluation_ids() == [first, during])
        assert watcher.client.state is State.CONNECTED
    finally:
        watcher.close()
        proxy.close()


def test_after_its_attempts_the_client_waits_disconnected_until_retry(runtime: Runtime, tmp_path: Path) -> None:
    server = LiveServer(runtime)  # not started: nothing listens on its port
    watcher = Watcher(server.url, token_of(runtime), ["runs"], backoff=Backoff(first=0.01, cap=0.02, max_attempts=3))
    try:
        watcher.wait(lambda: watcher.client.state is State.DISCONNECTED and watcher.client.attempt == 4)
        attempts = [attempt for state, attempt in watcher.states if state is State.RECONNECTING]
        assert attempts == [1, 2, 3]
        server.start()
        time.sleep(0.1)
        assert watcher.client.state is State.DISCONNECTED  # it gave up; only the user brings it back
        watcher.retry()
        watcher.wait_connected()
    finally:
        watcher.close()
        server.stop()


def test_a_refused_token_stops_the_client(runtime: Runtime, live_server: LiveServer) -> None:
    watcher = Watcher(live_server.url, "forged", ["runs"])
    try:
        watcher.wait(lambda: watcher.client.state is State.DISCONNECTED and watcher.client.error is not None)
        assert not any(state is State.RECONNECTING for state, _ in watcher.states)
    finally:
        watcher.close()


def test_backoff_is_jittered_exponential_and_capped() -> None:
    backoff = Backoff()
    for attempt, ceiling in [(1, 0.25), (2, 0.5), (3, 1.0), (8, 30.0), (20, 30.0)]:
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert min(delays) >= 0 and max(delays) <= ceiling
        assert max(delays) > ceiling / 2  # spread over the range, not a fixed delay


@pytest.mark.parametrize("backend", ["distributed"], indirect=True)
def test_two_replicas_on_redis_both_deliver_every_event(runtime: Runtime, settings: Settings) -> None:
    twin = build_runtime(settings, migrate_schema=False)
    first, second = LiveServer(runtime), LiveServer(twin)
    first.start()
    second.start()
    watchers = [
        Watcher(first.url, token_of(runtime), ["evaluations"]),
        Watcher(second.url, token_of(twin), ["evaluations"]),
    ]
    try:
        for watcher in watchers:
            watcher.wait_connected()
        sent = [evaluate(runtime, 1), evaluate(twin, 2), evaluate(runtime, 3)]
        for watcher in watchers:
            watcher.wait(lambda w=watcher: len(w.events) == 3)  # type: ignore[misc]
            assert watcher.evaluation_ids() == sent
        assert watchers[0].events == watchers[1].events  # same ids on every replica
    finally:
        for watcher in watchers:
            watcher.close()
        first.stop()
        second.stop()
        twin.close()


def test_an_announced_restart_is_ridden_out_promptly_without_spending_attempts(
    runtime: Runtime, live_server: LiveServer
) -> None:
    # Two attempts only, the first ones up to 0.25 s: a plain backoff would give up during the restart.
    watcher = Watcher(live_server.url, token_of(runtime), ["runs"], backoff=Backoff(max_attempts=2))
    try:
        watcher.wait_connected()
        seen = len(watcher.states)
        live_server.stop()  # a clean shutdown closes with 1012, "service restart"
        # More failed attempts than a plain backoff allows (2) before it gives up.
        watcher.wait(lambda: [state for state, _ in watcher.states[seen:]].count(State.RECONNECTING) > 4)
        assert watcher.client.state is State.RECONNECTING
        live_server.start()
        ready = time.monotonic()
        watcher.wait_connected()
        assert time.monotonic() - ready < 0.5
        assert State.DISCONNECTED not in [state for state, _ in watcher.states]
    finally:
        watcher.close()
