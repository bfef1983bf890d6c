"""A real dashboard-api on a real port, which tests stop and start, and a proxy that can go silent."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import pytest

from tars.api.applications import create_dashboard_app
from tars.services.runtime import Runtime
from tests.conftest import AppServer


class LiveServer(AppServer):
    """dashboard-api in a thread of this process, on one port across restarts."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(lambda: create_dashboard_app(runtime))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


@pytest.fixture
def live_server(runtime: Runtime) -> Iterator[LiveServer]:
    server = LiveServer(runtime)
    server.start()
    yield server
    with contextlib.suppress(AssertionError):
        server.stop()


class FreezableProxy:
    """A TCP proxy; ``freeze()`` stops it passing bytes on the connections it has, without closing
    them — a network path gone silent, which only a heartbeat can notice."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0  # the port it binds, once it listens
        self._connections: list[threading.Event] = []  # each connection's "frozen" flag
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def freeze(self) -> None:
        for frozen in list(self._connections):
            frozen.set()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        frozen = threading.Event()  # connections made after a freeze go through
        self._connections.append(frozen)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    if frozen.is_set():
                        continue  # swallowed: the other side hears nothing
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
