"""What the live feed reads: events as they are published, and a channel's recent history."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from tars.bus.base import EventBus, History
from tars.domain.events import Event


class LiveEvents:
    """The event bus as its readers see it (they never publish: services do, with what they store)."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        """Every event published from now on, by any process, in order per channel."""
        return self._bus.subscribe()

    async def history(self, channel: str, after: int | None) -> History:
        """The events of ``channel`` after id ``after`` still in its replay window (see EventBus)."""
        return await self._bus.history(channel, after)
