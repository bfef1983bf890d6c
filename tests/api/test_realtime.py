"""A connection's bookkeeping of what it sent: duplicates dropped, gaps filled from the window."""

from __future__ import annotations

import asyncio

from tars.api.realtime import Connection, Live, Subscribe
from tars.bus.memory import InProcessEventBus
from tars.domain.events import Event
from tars.domain.users import Principal, Role
from tars.services.auth.watch import Watched


def evaluation(n: int) -> Event:
    return Event("evaluation.created", {"id": n})


def connected(bus: InProcessEventBus) -> Connection:
    """A connection as the hub makes one, on the running loop, for a viewer."""
    access = Watched("a-token", Principal(1, "viewer-user", Role.VIEWER), asyncio.get_running_loop())
    return Connection(bus, access)  # the bus reads as LiveEvents do


def test_a_live_event_ahead_of_the_last_sent_brings_the_missed_ones_first() -> None:
    bus = InProcessEventBus(window=10)

    async def scenario() -> None:
        connection = connected(bus)
        subscribed = await connection.frames(Subscribe("evaluations", None))
        start = subscribed[0]["last_event_id"]
        first, second, third = (bus.publish(evaluation(n)) for n in range(3))
        assert connection.follows(Live("evaluations", first)) is True
        # The second never arrived live (a lost announcement); the third shows the gap.
        assert connection.follows(Live("evaluations", third)) is False
        frames = await connection.fill_gap(Live("evaluations", third))
        assert [(f["id"], f["data"]["id"]) for f in frames] == [(start + 2, 1), (start + 3, 2)]
        # Late copies of what was sent are dropped.
        assert connection.follows(Live("evaluations", second)) is None
        assert connection.follows(Live("evaluations", third)) is None

    asyncio.run(scenario())


def test_a_gap_the_window_no_longer_covers_is_a_reset() -> None:
    bus = InProcessEventBus(window=2)

    async def scenario() -> None:
        connection = connected(bus)
        await connection.frames(Subscribe("evaluations", None))
        published = [bus.publish(evaluation(n)) for n in range(5)]
        assert connection.follows(Live("evaluations", published[-1])) is False
        frames = await connection.fill_gap(Live("evaluations", published[-1]))
        assert [f["type"] for f in frames] == ["reset", "subscribed"]
        assert frames[1]["last_event_id"] == published[-1].ids["evaluations"]

    asyncio.run(scenario())
