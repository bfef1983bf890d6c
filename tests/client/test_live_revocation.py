"""The Python client when the server ends its connection over its credential: revoked, it stops
and says why (no retry could work); expired, it reconnects at once with the token it is given then.

On the default heartbeat (a ping every 30 s), so no reconnection happens but the ones these tests cause."""

from __future__ import annotations

from tars.client.live import AccessRevoked, State
from tars.domain.users import Role
from tars.services.runtime import Runtime
from tars.storage.users import get_user_by_username
from tests.client.conftest import LiveServer
from tests.client.test_live import Watcher, evaluate, token_of


def test_a_revoked_key_stops_the_client_which_says_why(runtime: Runtime, live_server: LiveServer) -> None:
    keys = runtime.security.accounts.api_keys
    created = keys.create(None, username="viewer-user", role=Role.VIEWER)
    watcher = Watcher(live_server.url, created.key, ["evaluations"])
    try:
        watcher.wait_connected()
        keys.revoke(None, created.record.prefix)
        watcher.wait(lambda: watcher.failure is not None, timeout=5)
        revoked = watcher.failure
        assert isinstance(revoked, AccessRevoked)
        assert (revoked.code, revoked.reason) == (4401, "this API key has been revoked")
        assert str(revoked) == "signed out: access revoked (this API key has been revoked; close code 4401)"
        assert watcher.client.state is State.DISCONNECTED and watcher.client.error == str(revoked)
        assert watcher.client.close_code == 4401
        assert not any(state is State.RECONNECTING for state, _ in watcher.states)  # not a single retry
    finally:
        watcher.close()


def test_a_deactivated_user_stops_the_client(runtime: Runtime, live_server: LiveServer) -> None:
    watcher = Watcher(live_server.url, token_of(runtime), ["runs"])
    try:
        watcher.wait_connected()
        with runtime.sessions() as session:
            user = get_user_by_username(session, "viewer-user")
            assert user is not None
        runtime.security.accounts.users.update(None, user.id, active=False)
        watcher.wait(lambda: watcher.failure is not None, timeout=5)
        assert isinstance(watcher.failure, AccessRevoked)
        assert watcher.failure.reason == "this account has been deactivated"
        assert watcher.client.state is State.DISCONNECTED
    finally:
        watcher.close()


def test_an_expired_token_is_renewed_at_once_and_nothing_is_missed(runtime: Runtime, live_server: LiveServer) -> None:
    given: list[str] = []

    def current_token() -> str:
        # The first connection's token runs out after a second; the next one is renewed.
        given.append(token_of(runtime, lifetime=1 if not given else None))
        return given[-1]

    watcher = Watcher(live_server.url, current_token, ["evaluations"])
    try:
        watcher.wait_connected()
        first = evaluate(runtime, 1)
        watcher.wait(lambda: len(given) == 2 and watcher.client.state is State.CONNECTED, timeout=5)
        assert watcher.client.close_code == 4440
        second = evaluate(runtime, 2)
        watcher.wait(lambda: watcher.evaluation_ids() == [first, second])
        # One immediate reconnection, no attempt spent on it and no backoff.
        assert [attempt for state, attempt in watcher.states if state is State.RECONNECTING] == [1]
        assert watcher.failure is None
    finally:
        watcher.close()
