"""Distributed bus: jobs on a Redis Stream with a consumer group, events over Redis pub/sub."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.commands.core import AsyncScript

from tars.bus import keys
from tars.bus.base import History
from tars.domain.agents import ALGORITHMS
from tars.domain.events import PLAIN_CHANNELS, Event
from tars.domain.jobs import Delivery, QueueStats
from tars.domain.runs import TrainingJob
from tars.domain.workers import WorkerStatus
from tars.tracing.propagation import message_carrier

log = logging.getLogger(__name__)

MAX_RECEIVE_SECONDS = 30.0


class RedisJobQueue:
    """Jobs on one Redis Stream per agent family, read through a consumer group. Each entry holds
    the job (``job``) and the trace context it was sent with (``trace``), as fields of their own.

    A worker reads the streams of the families it serves (``algorithms``; all by default).
    """

    transport = "redis_stream"
    holds_jobs_apart = True

    def __init__(self, url: str, *, claim_idle_seconds: float, algorithms: Iterable[str] = ALGORITHMS) -> None:
        # Reads block for up to a receive's timeout; the socket must wait longer than that (redis-py
        # 8 gives up after 5 s by default, which a 5 s receive would race).
        self._redis = redis.Redis.from_url(
            url, decode_responses=True, health_check_interval=30, socket_timeout=MAX_RECEIVE_SECONDS + 10
        )
        self._claim_idle_ms = int(claim_idle_seconds * 1000)
        self._algorithms = list(algorithms)
        self._streams = [keys.jobs_stream(algorithm) for algorithm in self._algorithms]
        self._groups_ready = False
        # Called with the families whose consumer group this queue had to create: Redis is new, or
        # restarted without its data, and jobs the database still counts as queued may be gone.
        self.on_groups_created: Callable[[list[str]], object] | None = None

    def _ensure_groups(self) -> None:
        if self._groups_ready:
            return
        created = []
        for algorithm, stream in zip(self._algorithms, self._streams, strict=True):
            try:
                # From id 0, so jobs enqueued before any worker existed are delivered too.
                self._redis.xgroup_create(stream, keys.WORKER_GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            else:
                created.append(algorithm)
        self._groups_ready = True
        if created and self.on_groups_created is not None:
            self.on_groups_created(created)

    def waiting_run_ids(self, algorithm: str) -> set[str]:
        """Runs with a job on the family's stream, delivered or not (acknowledged jobs are deleted)."""
        entries: Any = self._redis.xrange(keys.jobs_stream(algorithm))
        return {json.loads(fields["job"])["run_id"] for _id, fields in entries if "job" in fields}

    def enqueue(self, job: TrainingJob, trace: dict[str, str] | None = None) -> None:
        self._redis.xadd(keys.jobs_stream(job.algorithm), _entry(job, trace))

    def receive(self, consumer: str, timeout: float) -> Delivery | None:
        timeout = min(timeout, MAX_RECEIVE_SECONDS)
        self._ensure_groups()
        try:
            for stream in self._streams:
                claimed = self._claim_stale(stream, consumer)
                if claimed is not None:
                    return claimed
            response: Any = self._redis.xreadgroup(
                keys.WORKER_GROUP,
                consumer,
                dict.fromkeys(self._streams, ">"),
                count=1,
                block=max(1, int(timeout * 1000)),
            )
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):
                # Redis restarted without its data: the streams and group are gone; make them again.
                self._groups_ready = False
            raise
        for _stream, messages in response or []:
            for message_id, fields in messages:
                return _delivery(message_id, fields, redelivered=False)
        return None

    def _claim_stale(self, stream: str, consumer: str) -> Delivery | None:
        """Take over a job whose worker went silent (killed, partitioned) before acknowledging it."""
        result: Any = self._redis.xautoclaim(
            stream, keys.WORKER_GROUP, consumer, min_idle_time=self._claim_idle_ms, start_id="0-0", count=1
        )
        for message_id, fields in result[1]:
            if fields:
                log.warning("claimed stale job %s on %s for %s", message_id, stream, consumer)
                return _delivery(message_id, fields, redelivered=True)
        return None

    def ack(self, delivery: Delivery) -> None:
        stream = keys.jobs_stream(delivery.job.algorithm)
        pipe = self._redis.pipeline()
        pipe.xack(stream, keys.WORKER_GROUP, delivery.message_id)
        pipe.xdel(stream, delivery.message_id)
        pipe.execute()

    def keep_alive(self, delivery: Delivery, consumer: str) -> None:
        # Re-claiming a message to its own consumer resets its idle time.
        self._redis.xclaim(
            keys.jobs_stream(delivery.job.algorithm),
            keys.WORKER_GROUP,
            consumer,
            min_idle_time=0,
            message_ids=[delivery.message_id],
            justid=True,
        )

    def release(self, delivery: Delivery) -> None:
        stream = keys.jobs_stream(delivery.job.algorithm)
        pipe = self._redis.pipeline()
        pipe.xadd(stream, _entry(delivery.job, delivery.trace))
        pipe.xack(stream, keys.WORKER_GROUP, delivery.message_id)
        pipe.xdel(stream, delivery.message_id)
        pipe.execute()

    def pending_count(self) -> int:
        """Jobs delivered to a worker and not yet acknowledged, over this queue's streams."""
        self._ensure_groups()
        total = 0
        for stream in self._streams:
            info: Any = self._redis.xpending(stream, keys.WORKER_GROUP)
            total += int(info["pending"])
        return total

    def stats(self) -> list[QueueStats]:
        self._ensure_groups()
        pipe = self._redis.pipeline(transaction=False)
        for stream in self._streams:
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
        answers: Any = pipe.execute()
        now_ms = time.time() * 1000
        stats = []
        for index, (algorithm, stream) in enumerate(zip(self._algorithms, self._streams, strict=True)):
            length, groups = int(answers[2 * index]), answers[2 * index + 1]
            group = next((g for g in groups if g["name"] == keys.WORKER_GROUP), None)
            pending = int(group["pending"]) if group else 0
            # Acknowledged jobs are deleted, so what is on the stream is either pending or waiting.
            waiting = max(length - pending, 0)
            oldest = 0.0
            if waiting and group:
                first: Any = self._redis.xrange(stream, min=f"({group['last-delivered-id']}", count=1)
                if first:
                    oldest = max(now_ms - int(first[0][0].split("-")[0]), 0) / 1000
            stats.append(QueueStats(algorithm, waiting=waiting, pending=pending, oldest_waiting_seconds=oldest))
        return stats

    def close(self) -> None:
        self._redis.close()


def _entry(job: TrainingJob, trace: dict[str, str] | None) -> dict[Any, Any]:
    entry: dict[Any, Any] = {"job": json.dumps(job.to_dict())}
    if trace:
        entry["trace"] = json.dumps(trace)
    return entry


def _delivery(message_id: str, fields: dict[str, str], *, redelivered: bool) -> Delivery:
    return Delivery(
        job=TrainingJob.from_dict(json.loads(fields["job"])),
        message_id=message_id,
        redelivered=redelivered,
        trace=json.loads(fields["trace"]) if "trace" in fields else {},
    )


class RedisWorkerRegistry:
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url, decode_responses=True)

    def beat(self, status: WorkerStatus, ttl: float) -> None:
        self._redis.set(keys.worker_key(status.name), json.dumps(status.to_dict()), px=max(1, int(ttl * 1000)))

    def workers(self) -> list[WorkerStatus]:
        names = sorted(self._redis.scan_iter(match=keys.worker_key("*"), count=100))
        if not names:
            return []
        values: Any = self._redis.mget(names)
        return [WorkerStatus.from_dict(json.loads(value)) for value in values if value]

    def remove(self, name: str) -> None:
        self._redis.delete(keys.worker_key(name))

    def close(self) -> None:
        self._redis.close()


# Numbers each event on each of its channels, keeps it in their windows and announces it, atomically
# per event: so every replica sees each channel's ids in order, and nothing is announced that is not
# kept. KEYS: each channel's sequence and log, once; ARGV: the window size, the pub/sub channel, the
# channels' names and expiries as a JSON array of [name, seconds], then two arguments per event: its
# channels' positions (1-based, comma-separated) and its JSON. Events are passed as they are, never
# decoded here: decoding a batch's JSON cost Redis most of its time. Returns each event's ids as
# "id,id;id,id,id;...": one string, not thousands of integers to parse.
_PUBLISH_MANY = """
local window, live = ARGV[1], ARGV[2]
local channels = cjson.decode(ARGV[3])
local names = {}
for c, channel in ipairs(channels) do
  names[c] = cjson.encode(channel[1])
  if redis.call('EXISTS', KEYS[2 * c - 1]) == 0 then
    local now = redis.call('TIME')
    redis.call('SET', KEYS[2 * c - 1], now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000)))
  end
end
local results = {}
for a = 4, #ARGV, 2 do
  local event, ids, parts = ARGV[a + 1], {}, {}
  for position in string.gmatch(ARGV[a], '%d+') do
    local c = tonumber(position)
    local id = redis.call('INCR', KEYS[2 * c - 1])
    redis.call('XADD', KEYS[2 * c], 'MAXLEN', window, id .. '-0', 'event', event)
    ids[#ids + 1] = id
    parts[#parts + 1] = names[c] .. ':' .. id
  end
  redis.call('PUBLISH', live, '{"ids":{' .. table.concat(parts, ',') .. '},' .. string.sub(event, 2))
  results[#results + 1] = table.concat(ids, ',')
end
for c, channel in ipairs(channels) do
  if channel[2] > 0 then
    redis.call('EXPIRE', KEYS[2 * c - 1], channel[2])
    redis.call('EXPIRE', KEYS[2 * c], channel[2])
  end
end
return table.concat(results, ';')
"""
# Events numbered per script call: Redis serves nobody else while one runs.
_PUBLISH_CHUNK = 250
# Channels of one run or one agent are many and short-lived; the two feeds stay.
_SCOPED_CHANNEL_TTL_SECONDS = 7 * 24 * 3600


class RedisEventBus:
    def __init__(self, url: str, *, window: int = 1_000) -> None:
        self._url = url
        self._window = window
        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self._publish_chunk = self._redis.register_script(_PUBLISH_MANY)
        # An asyncio client per event loop that publishes (`publish_many_on_loop`), as the evaluation
        # store keeps a pool per loop.
        self._loop_clients: dict[asyncio.AbstractEventLoop, tuple[aioredis.Redis, AsyncScript]] = {}
        self._channel = keys.events_channel(int(self._redis.connection_pool.connection_kwargs.get("db") or 0))

    def publish(self, event: Event) -> Event:
        return self.publish_many([event])[0]

    def publish_many(self, events: list[Event]) -> list[Event]:
        # One script call per chunk: each event still numbered, kept and announced atomically.
        published: list[Event] = []
        for chunk in _chunks(events):
            keys_, args, routes = self._script_arguments(chunk)
            published += _numbered(chunk, routes, self._publish_chunk(keys=keys_, args=args))
        return published

    async def publish_many_on_loop(self, events: list[Event]) -> list[Event]:
        script = self._loop_script()
        published: list[Event] = []
        for chunk in _chunks(events):
            keys_, args, routes = self._script_arguments(chunk)
            published += _numbered(chunk, routes, await script(keys=keys_, args=args))
        return published

    def _loop_script(self) -> AsyncScript:
        """The publishing script on the running loop's own client (opened on first use)."""
        loop = asyncio.get_running_loop()
        if loop not in self._loop_clients:
            client = aioredis.Redis.from_url(self._url, decode_responses=True)
            self._loop_clients[loop] = (client, client.register_script(_PUBLISH_MANY))
        return self._loop_clients[loop][1]

    async def close_on_loop(self) -> None:
        opened = self._loop_clients.pop(asyncio.get_running_loop(), None)
        if opened is not None:
            await opened[0].aclose()

    def _script_arguments(self, events: list[Event]) -> tuple[list[str], list[Any], list[list[str]]]:
        """The publishing script's keys and arguments for ``events``, and each event's channels."""
        positions: dict[str, int] = {}
        channels: list[tuple[str, int]] = []
        keys_: list[str] = []
        entries: list[str | bytes] = []
        routes: list[list[str]] = []
        for event in events:
            route = event.channels
            for channel in route:
                if channel not in positions:
                    positions[channel] = len(positions) + 1
                    keys_ += [keys.event_sequence(channel), keys.event_log(channel)]
                    channels.append((channel, 0 if channel in PLAIN_CHANNELS else _SCOPED_CHANNEL_TTL_SECONDS))
            entries.append(",".join(str(positions[channel]) for channel in route))
            entries.append(orjson.dumps({"type": event.type, "data": event.data, "trace": event.trace}, default=str))
            routes.append(route)
        return keys_, [self._window, self._channel, orjson.dumps(channels), *entries], routes

    async def history(self, channel: str, after: int | None) -> History:
        # In a thread, with the blocking client: it serves every event loop alike, and a replay
        # is rare next to live events.
        return await asyncio.to_thread(self._history, channel, after)

    def _history(self, channel: str, after: int | None) -> History:
        latest: Any = self._redis.get(keys.event_sequence(channel))
        if latest is None:
            latest = self._open(channel)
        last_id = int(latest)
        if after is None:
            return History([], last_id, True)
        if after >= last_id:
            # Equal: nothing missed. Above: an id from before Redis lost this channel.
            return History([], last_id, after == last_id)
        entries: Any = self._redis.xrange(keys.event_log(channel), min=f"{after + 1}-0", max="+")
        events = []
        for entry_id, fields in entries:
            number = int(entry_id.split("-")[0])
            stored = Event.from_json(fields["event"])
            events.append(stored.numbered({channel: number}))
        first = events[0].ids[channel] if events else None
        last_id = max(last_id, events[-1].ids[channel]) if events else last_id
        return History(events, last_id, first == after + 1)

    def _open(self, channel: str) -> int:
        """Start a channel's ids (at Redis's time in milliseconds), so its first event follows
        directly the latest id a watcher is told; another process may have started it first."""
        seconds, microseconds = self._redis.time()
        ttl = None if channel in PLAIN_CHANNELS else _SCOPED_CHANNEL_TTL_SECONDS
        self._redis.set(keys.event_sequence(channel), seconds * 1000 + microseconds // 1000, nx=True, ex=ttl)
        return int(self._redis.get(keys.event_sequence(channel)) or 0)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[Event]]:
        client = aioredis.Redis.from_url(self._url, decode_responses=True)
        # Subscribed before we return, so no event published after subscribe() is missed.
        pubsub = await self._subscribed(client)
        try:
            yield self._listen(client, pubsub)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            await client.aclose()

    async def _subscribed(self, client: aioredis.Redis) -> PubSub:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        return pubsub

    async def _listen(self, client: aioredis.Redis, pubsub: PubSub) -> AsyncIterator[Event]:
        while True:
            try:
                message = await pubsub.get_message(timeout=1.0)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                # Redis restarting: keep the watcher alive and subscribe again. Events announced
                # meanwhile are in the channels' windows; watchers fill the gap from there.
                log.warning("event subscription lost (%s); resubscribing", exc)
                await asyncio.sleep(0.5)
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
                    pubsub = await self._subscribed(client)
                except (redis.ConnectionError, redis.TimeoutError, OSError):
                    continue
                continue
            if message is not None and message.get("type") == "message":
                yield Event.from_json(message["data"])

    def close(self) -> None:
        self._redis.close()


def _chunks(events: list[Event]) -> Iterator[list[Event]]:
    """``events`` traced to the publishing span, a script call's worth at a time."""
    carrier = message_carrier("event.publish")
    traced = [event.traced(carrier) for event in events]
    for start in range(0, len(traced), _PUBLISH_CHUNK):
        yield traced[start : start + _PUBLISH_CHUNK]


def _numbered(events: list[Event], routes: list[list[str]], numbers: Any) -> list[Event]:
    """``events`` with the ids the script gave them on their channels ("id,id;id,...")."""
    return [
        event.numbered({channel: int(number) for channel, number in zip(route, ids.split(","), strict=True)})
        for event, route, ids in zip(events, routes, numbers.split(";"), strict=True)
    ]
