"""The API servers as `tars up` and `tars serve` run them: request lines are logged without secrets."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import httpx
import pytest
import websockets.sync.client

from tars.api.applications import create_dashboard_app
from tars.cli.servers import bound_address, make_server
from tars.services.runtime import Runtime
from tests.waiting import eventually


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def server_log(runtime: Runtime) -> Iterator[tuple[int, Lines]]:
    server = make_server(create_dashboard_app(runtime), "127.0.0.1", 0, "info")  # port 0: the one it binds
    lines = Lines()
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addHandler(lines)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    eventually(lambda: server.started, message="the server to start")
    try:
        yield bound_address(server)[1], lines
    finally:
        server.should_exit = True
        thread.join(10)
        for name in ("uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).removeHandler(lines)


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_tokens_and_keys_in_request_lines_are_redacted(
    server_log: tuple[int, Lines], auth: dict[str, dict[str, str]]
) -> None:
    port, lines = server_log
    token = auth["viewer"]["Authorization"].removeprefix("Bearer ")
    with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/ws?token={token}") as socket:
        assert '"authenticated"' in str(socket.recv(timeout=5))
    key = "tars_0123456789ab_" + "S" * 43
    httpx.get(f"http://127.0.0.1:{port}/api/v1/agents?api_key={key}", timeout=5)
    eventually(
        lambda: any("/api/v1/agents" in line for line in lines.lines),
        5,
        message=lambda: f"the request line among {lines.lines}",
    )
    logged = "\n".join(lines.lines)
    assert "/ws?token=[redacted]" in logged
    assert "api_key=[redacted]" in logged
    for secret in (token, token.split(".")[2], "S" * 43):
        assert secret not in logged
