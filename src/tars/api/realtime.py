"""Fans events from the bus out to this process's WebSocket connections, with nothing lost.

One subscription to the bus per process, however many browsers are connected. Each connection
remembers the last event id it sent on each channel: a live event right after it is sent, one at
or below it is a duplicate and dropped, and one further ahead means events went missing on the
way (a Redis reconnect, a full inbox) — those are fetched from the channel's history first.

Each connection is admitted through the credential watch (`tars.services.auth.watch`): when its
credential is revoked or expires, the watch says so and the connection is closed with a code of
its own, which clients do not reconnect on (or, for an expiry, reconnect on with a renewed token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from tars.domain.events import Event
from tars.domain.users import Principal
from tars.metrics.catalogue import (
    WS_CONNECTIONS,
    WS_EVENTS_REPLAYED,
    WS_EVENTS_SENT,
    WS_OPENED,
    WS_RESETS,
    WS_RESUMED,
)
from tars.services.auth.watch import AccessEnded, CredentialWatch, Watched
from tars.services.live import LiveEvents
from tars.tracing.propagation import consuming

log = logging.getLogger(__name__)

# Frames a connection may fall behind by before it is closed as too slow (it resumes on reconnect).
CONNECTION_BACKLOG = 1000

# Close codes of a connection whose credential stopped admitting it (docs/websocket.md). Revoked —
# the user deactivated, the API key revoked, the login session ended — is final: a client reports
# it and does not reconnect. Expired (after IIS's 440 Login Time-out) asks for a renewed token.
CREDENTIALS_REVOKED = 4401
CREDENTIALS_EXPIRED = 4440
# How long a new connection waits for the relay to follow the bus, and between its tries when it cannot.
RELAY_START_SECONDS = 5.0
RELAY_RETRY_SECONDS = 0.5
# A close frame's reason is at most 123 bytes of UTF-8.
MAX_CLOSE_REASON_BYTES = 123


@dataclass(frozen=True)
class Subscribe:
    channel: str
    last_event_id: int | None


@dataclass(frozen=True)
class Unsubscribe:
    channel: str


@dataclass(frozen=True)
class Live:
    channel: str
    event: Event


Command = Subscribe | Unsubscribe | Live
Frame = dict[str, Any]


def event_frame(channel: str, event: Event) -> Frame:
    return {"type": "event", "channel": channel, "id": event.ids[channel], "event": event.type, "data": event.data}


def _encode(frame: Frame) -> str:
    return orjson.dumps(frame, default=str).decode()


class FrameCache:
    """Encodes each (channel, event id) once, however many connections send it: a broadcast to
    a thousand dashboards would otherwise serialise the same JSON a thousand times."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._texts: OrderedDict[tuple[str, int], str] = OrderedDict()

    def text(self, frame: Frame) -> str:
        if frame["type"] != "event":
            return _encode(frame)
        key = (frame["channel"], frame["id"])
        text = self._texts.get(key)
        if text is None:
            text = self._remember(key, _encode(frame))
        return text

    def event_text(self, channel: str, event: Event) -> str:
        key = (channel, event.ids[channel])
        text = self._texts.get(key)
        if text is None:
            text = self._remember(key, _encode(event_frame(channel, event)))
        return text

    def _remember(self, key: tuple[str, int], text: str) -> str:
        self._texts[key] = text
        if len(self._texts) > self._size:
            self._texts.popitem(last=False)
        return text


def closing(ended: AccessEnded) -> tuple[int, str]:
    """The close code and reason for a connection whose credential ``ended``."""
    code = CREDENTIALS_REVOKED if ended.revoked else CREDENTIALS_EXPIRED
    reason = ended.reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
    return code, reason


class Connection:
    """One WebSocket's subscriptions; its writer turns commands and live events into frames."""

    def __init__(self, events: LiveEvents, access: Watched) -> None:
        self._events = events
        # Its hold on the credential it connected with: ``access.ended`` resolves when that is
        # revoked or expires.
        self.access = access
        self.channels: set[str] = set()  # what live events to queue for it
        self._sent: dict[str, int] = {}  # channel -> last event id sent
        self.outbox: asyncio.Queue[Command] = asyncio.Queue(maxsize=CONNECTION_BACKLOG)
        self.overflowed = False

    @property
    def principal(self) -> Principal:
        return self.access.principal

    def request(self, command: Subscribe | Unsubscribe) -> None:
        # Live events for the channel are queued from now on, behind this command: the writer
        # replays history first, and drops the live copies of what it replayed.
        if isinstance(command, Subscribe):
            self.channels.add(command.channel)
        else:
            self.channels.discard(command.channel)
        self.offer(command)

    def offer(self, command: Command) -> None:
        try:
            self.outbox.put_nowait(command)
        except asyncio.QueueFull:
            self.overflowed = True

    def follows(self, live: Live) -> bool | None:
        """True when ``live`` is its channel's next event (now counted as sent), None when it is to
        be dropped (not subscribed, or already sent from history), False when events before it
        went missing: then ``fill_gap``."""
        last = self._sent.get(live.channel)
        number = live.event.ids.get(live.channel)
        if last is None or number is None or number <= last:
            return None
        if number == last + 1:
            self._sent[live.channel] = number
            return True
        return False

    async def frames(self, command: Subscribe | Unsubscribe) -> list[Frame]:
        """The frames to send for ``command``, in order."""
        if isinstance(command, Unsubscribe):
            self._sent.pop(command.channel, None)
            return [{"type": "unsubscribed", "channel": command.channel}]
        return await self._subscribe(command)

    async def _subscribe(self, command: Subscribe) -> list[Frame]:
        channel, after = command.channel, command.last_event_id
        history = await self._events.history(channel, after)
        if after is None:
            self._sent[channel] = history.last_id
            return [{"type": "subscribed", "channel": channel, "last_event_id": history.last_id}]
        if not history.complete:
            WS_RESETS.inc()
            self._sent[channel] = history.last_id
            return [
                {"type": "reset", "channel": channel},
                {"type": "subscribed", "channel": channel, "last_event_id": history.last_id},
            ]
        WS_RESUMED.inc()
        frames: list[Frame] = [{"type": "subscribed", "channel": channel, "last_event_id": after}]
        frames += [event_frame(channel, event) for event in history.events]
        WS_EVENTS_REPLAYED.inc(len(history.events))
        self._sent[channel] = history.events[-1].ids[channel] if history.events else after
        return frames

    async def fill_gap(self, live: Live) -> list[Frame]:
        """The frames for a live event that ``follows`` found ahead of the last one sent: the
        missed events from the channel's history, then it; or ``reset`` if history lost them."""
        channel, event = live.channel, live.event
        last, number = self._sent[channel], event.ids[channel]
        history = await self._events.history(channel, last)
        if not history.complete:
            WS_RESETS.inc()
            self._sent[channel] = max(history.last_id, number)
            return [
                {"type": "reset", "channel": channel},
                {"type": "subscribed", "channel": channel, "last_event_id": self._sent[channel]},
            ]
        missed = [e for e in history.events if e.ids[channel] <= number] or [event]
        WS_EVENTS_REPLAYED.inc(len(missed) - 1)
        self._sent[channel] = max(number, missed[-1].ids[channel])
        return [event_frame(channel, e) for e in missed]


class Hub:
    """The bus is followed only while a connection is open: a replica nobody watches (an ingest
    replica, or any between browser sessions) reads no events, where decoding every batch it stored
    cost it a tenth of its ingest rate. A connection's first subscription reads the channel's latest
    id after the relay is subscribed, so it misses nothing either way."""

    def __init__(self, events: LiveEvents, credentials: CredentialWatch) -> None:
        self._events = events
        self._credentials = credentials
        self._connections: set[Connection] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.frames = FrameCache()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def connect(self, credential: str) -> Connection:
        """A connection for whoever ``credential`` stands for (AuthenticationFailed if it stands
        for no one), held to that credential until ``disconnect``."""
        connection = Connection(self._events, await self._credentials.admit(credential))
        self._connections.add(connection)
        WS_CONNECTIONS.inc()
        WS_OPENED.inc()
        await self._relaying()
        return connection

    def disconnect(self, connection: Connection) -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            self._credentials.release(connection.access)
            WS_CONNECTIONS.dec()
        if not self._connections and self._task is not None:
            self._task.cancel()
            self._task = None

    @property
    def relaying(self) -> bool:
        """Whether the hub follows the bus now (it does while any connection is open)."""
        return self._task is not None and self._ready.is_set()

    async def _relaying(self) -> None:
        if self._task is None:
            self._ready = asyncio.Event()
            self._task = asyncio.create_task(self._relay(self._ready), name="event-hub")
        # With the bus out of reach, the connection still opens: its channels' histories are read
        # (and fail alike) when it subscribes, and the relay keeps trying in the background.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RELAY_START_SECONDS):
                await self._ready.wait()

    async def _relay(self, ready: asyncio.Event) -> None:
        while True:
            try:
                async with self._events.subscribe() as events:
                    ready.set()
                    async for event in events:
                        # The WebSocket frames an event causes belong to the trace that published it.
                        with consuming(
                            "event.relay", event.trace, transport="bus", attributes={"tars.event": event.type}
                        ):
                            self.deliver(event)
            except Exception as exc:  # the bus out of reach as the relay subscribed: tried again
                log.warning("live feed could not follow the event bus (%s); trying again", exc)
                await asyncio.sleep(RELAY_RETRY_SECONDS)

    def deliver(self, event: Event) -> None:
        for connection in list(self._connections):
            for channel in event.ids:
                if channel in connection.channels:
                    connection.offer(Live(channel, event))


def count_sent(frames: list[Frame]) -> None:
    WS_EVENTS_SENT.inc(sum(1 for frame in frames if frame["type"] == "event"))
