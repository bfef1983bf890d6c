"""The event bus contract — numbering, replay windows, fan-out — on both implementations."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from tars.bus.base import EventBus
from tars.bus.memory import InProcessEventBus
from tars.bus.redis_streams import RedisEventBus
from tars.domain.events import Event
from tests.waiting import eventually

WINDOW = 5
BusFactory = Callable[[], EventBus]


@pytest.fixture(params=["in-process", "redis"])
def make_bus(request: pytest.FixtureRequest) -> Iterator[BusFactory]:
    """Makes buses sharing one store: a Redis database, or (in-process) nothing at all."""
    made: list[EventBus] = []

    def make() -> EventBus:
        bus: EventBus
        if request.param == "in-process":
            bus = InProcessEventBus(window=WINDOW)
        else:
            bus = RedisEventBus(request.getfixturevalue("redis_url"), window=WINDOW)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        bus.close()


def listening(bus: EventBus) -> Callable[[int], None]:
    """Call before subscribing; returns a wait until ``count`` more subscriptions are live (Redis
    pub/sub subscribes asynchronously; the in-process bus has subscribed once subscribe() returns)."""
    if not isinstance(bus, RedisEventBus):
        return lambda count: None
    client = redis.Redis.from_url(bus._url)
    channel = bus._channel

    def subscribers() -> int:
        return int(client.pubsub_numsub(channel)[0][1])

    before = subscribers()
    return lambda count: eventually(lambda: subscribers() >= before + count, 5, message=f"{count} subscription(s)")


def progress(n: int, run_id: str = "r") -> Event:
    return Event("run.progress", {"run_id": run_id, "agent_id": "ppo", "episodes_done": n})


def test_every_subscriber_gets_every_event_in_order_even_from_other_threads(make_bus: BusFactory) -> None:
    bus = make_bus()
    sent = [progress(n) for n in range(20)]

    async def scenario() -> list[list[Event]]:
        subscribed = listening(bus)
        async with bus.subscribe() as first, bus.subscribe() as second:
            await asyncio.to_thread(subscribed, 2)
            publisher = threading.Thread(target=lambda: [bus.publish(e) for e in sent])
            publisher.start()
            received = []
            for stream in (first, second):
                received.append([await asyncio.wait_for(anext(stream), 5) for _ in sent])
            publisher.join()
            return received

    for events in asyncio.run(scenario()):
        assert [(e.type, e.data) for e in events] == [(e.type, e.data) for e in sent]
        for channel in ("runs", "agent:ppo", "run:r"):
            ids = [e.ids[channel] for e in events]
            assert ids == list(range(ids[0], ids[0] + len(sent)))


def test_an_event_is_numbered_on_each_of_its_channels(make_bus: BusFactory) -> None:
    bus = make_bus()
    first = bus.publish(progress(1, run_id="a"))
    second = bus.publish(progress(2, run_id="b"))
    assert set(first.ids) == {"runs", "agent:ppo", "run:a"}
    assert second.ids["runs"] == first.ids["runs"] + 1
    assert second.ids["agent:ppo"] == first.ids["agent:ppo"] + 1
    assert "run:a" not in second.ids


def test_many_events_at_once_are_numbered_kept_and_announced_as_one_by_one(make_bus: BusFactory) -> None:
    bus = make_bus()
    first = bus.publish(progress(0, run_id="a"))
    # More than one script call's worth, over channels new and old, some events on fewer channels.
    batch = [progress(n, run_id="a" if n % 2 else f"new-{n}") for n in range(1, 600)]

    async def scenario() -> tuple[list[Event], list[Event]]:
        subscribed = listening(bus)
        async with bus.subscribe() as live:
            await asyncio.to_thread(subscribed, 1)
            published = await asyncio.to_thread(bus.publish_many, batch)
            return published, [await asyncio.wait_for(anext(live), 5) for _ in batch]

    published, announced = asyncio.run(scenario())
    assert [e.ids["runs"] for e in published] == [first.ids["runs"] + n for n in range(1, 600)]
    assert [e.ids["agent:ppo"] for e in published] == [first.ids["agent:ppo"] + n for n in range(1, 600)]
    on_a = [e.ids["run:a"] for e in published if "run:a" in e.ids]
    assert on_a == [first.ids["run:a"] + n for n in range(1, len(on_a) + 1)]
    assert published[1].ids.keys() == {"runs", "agent:ppo", "run:new-2"}
    assert [(e.data, e.ids) for e in announced] == [(e.data, e.ids) for e in published]
    history = asyncio.run(bus.history("runs", published[-WINDOW].ids["runs"]))
    assert [e.data["episodes_done"] for e in history.events] == list(range(600 - WINDOW + 1, 600))


def test_history_replays_what_came_after_an_id(make_bus: BusFactory) -> None:
    bus = make_bus()
    published = [bus.publish(progress(n)) for n in range(4)]
    after = published[0].ids["runs"]
    history = asyncio.run(bus.history("runs", after))
    assert history.complete and history.last_id == published[-1].ids["runs"]
    assert [e.data["episodes_done"] for e in history.events] == [1, 2, 3]
    assert [e.ids["runs"] for e in history.events] == [after + 1, after + 2, after + 3]
    caught_up = asyncio.run(bus.history("runs", history.last_id))
    assert caught_up.complete and caught_up.events == []
    latest = asyncio.run(bus.history("runs", None))
    assert latest.complete and latest.events == [] and latest.last_id == history.last_id


def test_an_id_older_than_the_window_is_incomplete(make_bus: BusFactory) -> None:
    bus = make_bus()
    published = [bus.publish(progress(n)) for n in range(WINDOW * 3)]
    history = asyncio.run(bus.history("runs", published[0].ids["runs"]))
    assert not history.complete
    assert history.last_id == published[-1].ids["runs"]


def test_an_id_never_handed_out_is_incomplete(make_bus: BusFactory) -> None:
    bus = make_bus()
    last = bus.publish(progress(0)).ids["runs"]
    assert not asyncio.run(bus.history("runs", last + 10)).complete
    assert not asyncio.run(bus.history("evaluations", 17)).complete  # nothing published there yet


def test_a_new_channels_first_event_follows_the_id_a_watcher_was_told(make_bus: BusFactory) -> None:
    bus = make_bus()
    told = asyncio.run(bus.history("agent:new", None)).last_id
    assert told > 0
    assert bus.publish(Event("evaluation.created", {"agent_id": "new"})).ids["agent:new"] == told + 1


def test_ids_after_losing_the_window_are_above_every_earlier_id(
    make_bus: BusFactory, request: pytest.FixtureRequest
) -> None:
    before = make_bus().publish(progress(0)).ids["runs"]
    if "redis" in request.node.callspec.id:
        redis.Redis.from_url(request.getfixturevalue("redis_url")).flushdb()  # restarted, data lost
    eventually(lambda: time.time() * 1000 > before + 1, message="the clock to pass the last id")  # a restart is later
    after = make_bus().publish(progress(1)).ids["runs"]  # in-process: a new process's bus
    assert after > before
    if "redis" in request.node.callspec.id:
        assert not asyncio.run(make_bus().history("runs", before)).complete


def test_redis_replicas_share_one_window(redis_url: str) -> None:
    writer, reader = RedisEventBus(redis_url), RedisEventBus(redis_url)
    try:
        first = writer.publish(progress(0)).ids["runs"]
        writer.publish(progress(1))
        history = asyncio.run(reader.history("runs", first))
        assert history.complete and [e.data["episodes_done"] for e in history.events] == [1]
    finally:
        writer.close()
        reader.close()


def test_publishing_from_the_loop_numbers_keeps_and_announces_as_publishing_from_a_thread(
    make_bus: BusFactory,
) -> None:
    bus = make_bus()
    sent = [progress(n) for n in range(3)]

    async def scenario() -> tuple[list[Event], list[Event]]:
        subscribed = listening(bus)
        async with bus.subscribe() as stream:
            await asyncio.to_thread(subscribed, 1)
            first = bus.publish(progress(-1))
            published = await bus.publish_many_on_loop(sent)
            received = [await asyncio.wait_for(anext(stream), 5) for _ in range(len(sent) + 1)][1:]
            # Used again after its loop's client is closed: opened anew.
            await bus.close_on_loop()
            await bus.publish_many_on_loop([progress(3)])
            await bus.close_on_loop()
        assert [e.ids["run:r"] for e in published] == [first.ids["run:r"] + n for n in (1, 2, 3)]
        return published, received

    published, received = asyncio.run(scenario())
    assert [(e.type, e.data, e.ids) for e in received] == [(e.type, e.data, e.ids) for e in published]
    history = asyncio.run(bus.history("run:r", published[0].ids["run:r"] - 1))
    assert [e.data["episodes_done"] for e in history.events] == [0, 1, 2, 3]
