"""Fans events from the bus out to this process's WebSocket connections.

One subscription to the bus per process, however many browsers are connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tars.bus.base import EventBus
from tars.domain.events import Event

log = logging.getLogger(__name__)

CONNECTION_BACKLOG = 1000


def channels_of(event: Event) -> list[str]:
    channels = [event.channel]
    if agent_id := event.data.get("agent_id"):
        channels.append(f"agent:{agent_id}")
    if run_id := event.data.get("run_id"):
        channels.append(f"run:{run_id}")
    return channels


class Connection:
    def __init__(self) -> None:
        self.channels: set[str] = set()
        self.outbox: asyncio.Queue[tuple[str, Event]] = asyncio.Queue(maxsize=CONNECTION_BACKLOG)
        self.overflowed = False


class Hub:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._connections: set[Connection] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._relay(ready), name="event-hub")
        await ready.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def connect(self) -> Connection:
        connection = Connection()
        self._connections.add(connection)
        return connection

    def disconnect(self, connection: Connection) -> None:
        self._connections.discard(connection)

    async def _relay(self, ready: asyncio.Event) -> None:
        async with self._bus.subscribe() as events:
            ready.set()
            async for event in events:
                self.deliver(event)

    def deliver(self, event: Event) -> None:
        targets = channels_of(event)
        for connection in list(self._connections):
            for channel in targets:
                if channel not in connection.channels:
                    continue
                try:
                    connection.outbox.put_nowait((channel, event))
                except asyncio.QueueFull:
                    # A client this far behind is closed; it reconnects and reloads.
                    connection.overflowed = True
