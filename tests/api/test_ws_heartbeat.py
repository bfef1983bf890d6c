from __future__ import annotations

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
