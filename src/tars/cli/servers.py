"""The API services as uvicorn servers that share one process and its signal handling."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from tars.api.redaction import redact_server_logs


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us, so several can share one process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_server(app: FastAPI, host: str, port: int, log_level: str, log_format: str = "text") -> uvicorn.Server:
    # JSON logs: uvicorn's loggers hand their records to ours instead of printing text of their own.
    logging_config = {} if log_format == "text" else {"log_config": None}
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        lifespan="on",
        ws_ping_interval=None,
        **logging_config,  # type: ignore[arg-type]
    )
    redact_server_logs()  # after the Config: it configures uvicorn's loggers
    return _Server(config)


def bound_address(server: uvicorn.Server) -> tuple[str, int]:
    """The host and port a started server listens on: the real port when it was asked for port 0."""
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    return str(host), int(port)


def server_url(server: uvicorn.Server) -> str:
    """Where clients reach a started server (a wildcard address through the loopback)."""
    host, port = bound_address(server)
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
