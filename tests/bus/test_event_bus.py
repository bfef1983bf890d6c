from __future__ import annotations

import asyncio
import threading

import pytest

from tars.bus.base import EventBus
from tars.bus.memory import InProcessEventBus
from tars.bus.redis_streams import RedisEventBus
from tars.domain.events import Event


@pytest.fixture(params=["in-process", "redis"])
def bus(request: pytest.FixtureRequest) -> EventBus:
    if request.param == "in-process":
        return InProcessEventBus()
    return RedisEventBus(request.getfixturevalue("redis_url"))


def test_every_subscriber_gets_every_event_in_order_even_from_other_threads(bus: EventBus) -> None:
    sent = [Event("run.progress", {"run_id": "r", "episodes_done": n}) for n in range(20)]

    async def scenario() -> list[list[Event]]:
        async with bus.subscribe() as first, bus.subscribe() as second:
            await asyncio.sleep(0.2)  # Redis pub/sub subscribes asynchronously
            publisher = threading.Thread(target=lambda: [bus.publish(e) for e in sent])
            publisher.start()
            received = []
            for stream in (first, second):
                received.append([await asyncio.wait_for(anext(stream), 5) for _ in sent])
            publisher.join()
            return received

    for events in asyncio.run(scenario()):
        assert events == sent
    bus.close()
