from __future__ import annotations

import itertools
import time

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tars.services.runtime import Runtime
from tars.settings import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"ws_ping_seconds": 0.2, "ws_pong_timeout_seconds": 0.3})


def test_server_pings_and_closes_a_silent_client(
    runtime: Runtime, dashboard: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    with dashboard.websocket_connect(f"/ws?token={auth['viewer']['Authorization'].removeprefix('Bearer ')}") as ws:
        hello = ws.receive_json()
        assert hello["heartbeat"] == {"interval": 0.2, "timeout": 0.3}
        assert ws.receive_json() == {"type": "ping"}
        ws.send_json({"type": "pong"})
        assert ws.receive_json() == {"type": "ping"}
        # No pong this time.
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()


def test_an_answering_client_hears_a_ping_every_interval_well_within_its_silence_limit(
    runtime: Runtime, dashboard: TestClient, auth: dict[str, dict[str, str]]
) -> None:
    # A client gives up after interval + timeout of silence (0.5 s here): pings must come every
    # interval (0.2 s), not every interval + timeout, which raced the client's limit.
    with dashboard.websocket_connect(f"/ws?token={auth['viewer']['Authorization'].removeprefix('Bearer ')}") as ws:
        ws.receive_json()
        heard = []
        while len(heard) < 6:
            assert ws.receive_json() == {"type": "ping"}
            heard.append(time.monotonic())
            ws.send_json({"type": "pong"})
        gaps = [later - earlier for earlier, later in itertools.pairwise(heard)]
        assert max(gaps) < 0.4, gaps
