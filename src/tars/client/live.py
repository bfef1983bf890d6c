"""A client of the live feed (/ws, docs/websocket.md) that reconnects by itself and loses nothing.

It authenticates, subscribes to its channels with the last event id it saw on each, passes on
every event exactly once and in order, tells its owner when a channel must be reloaded (``reset``),
notices a silent server by the heartbeat, and reconnects with exponential backoff and full jitter.
When the server ends the connection because its credential was revoked, it stops and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
# Close codes of a server going away on purpose (uvicorn shutting down sends 1012): it will be
# back shortly, and a client that backed off exponentially meanwhile would come back late.
GOING_AWAY, SERVICE_RESTART = 1001, 1012
# Close codes of a connection whose credential stopped admitting it: revoked (the user deactivated,
# the API key revoked, the login session ended) is final; expired asks for a renewed token.
CREDENTIALS_REVOKED, CREDENTIALS_EXPIRED = 4401, 4440


class State(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class LiveEvent:
    channel: str
    id: int
    event: str
    data: dict[str, Any]


@dataclass
class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniformly up to first * 2^(n-1), capped."""

    first: float = 0.25
    cap: float = 30.0
    max_attempts: int = 10
    # After a server announced its restart: retry within ``first`` for this long, attempts not counted.
    restart_window: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0, min(self.cap, self.first * 2 ** (attempt - 1)))

    def restart_delay(self) -> float:
        return self.rng.uniform(0, self.first)


class Unauthenticated(Exception):
    """The server refused the token: retrying with it cannot work."""


class AccessRevoked(Exception):
    """The server closed the connection because its credential was revoked: connecting again with
    it cannot work. ``run()`` raises it."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"signed out: access revoked ({reason or 'no reason given'}; close code {code})")
        self.code = code
        self.reason = reason


class SilentServer(Exception):
    """Nothing heard from the server for a heartbeat interval and its timeout."""


Callback = Callable[..., Awaitable[None] | None]
# A bearer credential, or a function giving the current one (asked before each connection, so a
# short-lived access token can be renewed).
Token = str | Callable[[], str | Awaitable[str]]


class ReconnectingWebSocketClient:
    def __init__(
        self,
        url: str,
        token: Token,
        channels: Iterable[str],
        *,
        on_event: Callback | None = None,
        on_reset: Callback | None = None,
        on_state: Callback | None = None,
        backoff: Backoff | None = None,
        open_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.token = token
        self.channels = list(channels)
        self.last_ids: dict[str, int] = {}
        self.state = State.DISCONNECTED
        self.attempt = 0
        self.error: str | None = None
        # The close code of the last connection the server closed, if it sent one.
        self.close_code: int | None = None
        self._on_event = on_event
        self._on_reset = on_reset
        self._on_state = on_state
        self._backoff = backoff or Backoff()
        self._open_timeout = open_timeout
        self._stopping = asyncio.Event()
        self._retry = asyncio.Event()
        self._socket: ClientConnection | None = None
        self._restart_deadline: float | None = None
        self._token_expired = False

    # control

    async def run(self) -> None:
        """Stay connected until ``stop()``; after ``max_attempts`` failures in a row, wait in
        ``disconnected`` until ``retry()``. Returns at once if the server refuses the token, and
        raises AccessRevoked (in ``disconnected``) if the server revokes it while connected."""
        while not self._stopping.is_set():
            try:
                await self._connect_once()
            except Unauthenticated as exc:
                self.error = str(exc)
                await self._set_state(State.DISCONNECTED)
                return
            except AccessRevoked as exc:
                self.error = str(exc)
                log.warning("live feed: %s", exc)
                await self._set_state(State.DISCONNECTED)
                raise
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake, SilentServer) as exc:
                if self._stopping.is_set():
                    break  # closed by stop(), not lost
                self.error = f"{type(exc).__name__}: {exc}"
                log.info("live feed connection lost (%s)", self.error)
            if self._stopping.is_set():
                break
            if self._token_expired:
                # At once, with the token as it is now: renewed if ``token`` is a function, else
                # refused (Unauthenticated). No attempt is spent.
                self._token_expired = False
                self.attempt = 1
                await self._set_state(State.RECONNECTING)
                continue
            if self._in_announced_restart():
                self.attempt = 1
                await self._set_state(State.RECONNECTING)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._backoff.restart_delay())
                continue
            self.attempt += 1
            if self.attempt > self._backoff.max_attempts:
                await self._set_state(State.DISCONNECTED)
                await self._wait_for_retry()
                continue
            await self._set_state(State.RECONNECTING)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._backoff.delay(self.attempt))
        await self._set_state(State.DISCONNECTED)

    def _in_announced_restart(self) -> bool:
        loop = asyncio.get_running_loop()
        return self._restart_deadline is not None and loop.time() < self._restart_deadline

    def retry(self) -> None:
        """Start over after giving up (the "Retry" of a disconnected dashboard)."""
        self._retry.set()

    async def stop(self) -> None:
        self._stopping.set()
        self._retry.set()
        if self._socket is not None:
            await self._socket.close()

    async def drop(self) -> None:
        """Close the current connection as a network failure would; the client reconnects."""
        if self._socket is not None:
            await self._socket.close(code=4000, reason="dropped by client")

    async def _wait_for_retry(self) -> None:
        self._retry.clear()
        await self._retry.wait()
        self.attempt = 0

    # one connection

    async def _connect_once(self) -> None:
        if self.attempt == 0:
            await self._set_state(State.CONNECTING)
        socket = await websockets.connect(
            self.url, open_timeout=self._open_timeout, ping_interval=None, close_timeout=1
        )
        self._socket = socket
        try:
            await self._session(socket)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
            self.close_code = code
            if code == POLICY_VIOLATION and reason == "unauthenticated":
                raise Unauthenticated(reason) from exc
            if code == CREDENTIALS_REVOKED:
                raise AccessRevoked(code, reason) from exc
            if code == CREDENTIALS_EXPIRED:
                self._token_expired = True
            if code in (GOING_AWAY, SERVICE_RESTART) and self.state is State.CONNECTED:
                self._restart_deadline = asyncio.get_running_loop().time() + self._backoff.restart_window
            raise
        except SilentServer:
            # A close handshake with a server that stopped answering would only wait out close_timeout.
            socket.transport.abort()
            raise
        finally:
            self._socket = None
            await socket.close()

    async def _session(self, socket: ClientConnection) -> None:
        token = self.token() if callable(self.token) else self.token
        if not isinstance(token, str):
            token = await token
        await socket.send(json.dumps({"type": "auth", "token": token}))
        hello = json.loads(await asyncio.wait_for(socket.recv(), self._open_timeout))
        if hello.get("type") != "authenticated":
            raise Unauthenticated(str(hello.get("message", hello)))
        heartbeat = hello.get("heartbeat") or {}
        silence_limit = float(heartbeat.get("interval", 30)) + float(heartbeat.get("timeout", 10))
        pending = set(self.channels)
        for channel in self.channels:
            await socket.send(json.dumps(self._subscribe_frame(channel)))
        if not pending:
            await self._connected()
        while True:
            try:
                raw = await asyncio.wait_for(socket.recv(), silence_limit)
            except TimeoutError:
                raise SilentServer(f"no frame for {silence_limit:.1f} s") from None
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "event":
                await self._event(frame)
            elif kind == "ping":
                await socket.send('{"type":"pong"}')
            elif kind == "subscribed":
                channel = frame["channel"]
                self.last_ids[channel] = int(frame["last_event_id"])
                if channel in pending:
                    pending.discard(channel)
                    if not pending:
                        await self._connected()
            elif kind == "reset":
                await self._call(self._on_reset, frame["channel"])
            elif kind == "error":
                log.warning("live feed says: %s", frame.get("message"))

    def _subscribe_frame(self, channel: str) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "subscribe", "channel": channel}
        if channel in self.last_ids:
            frame["last_event_id"] = self.last_ids[channel]
        return frame

    async def _event(self, frame: dict[str, Any]) -> None:
        channel, number = frame["channel"], int(frame["id"])
        if number <= self.last_ids.get(channel, -1):
            return  # seen before the reconnect
        self.last_ids[channel] = number
        event = LiveEvent(channel, number, str(frame.get("event", "")), dict(frame.get("data") or {}))
        await self._call(self._on_event, event)

    async def _connected(self) -> None:
        self.attempt = 0
        self._restart_deadline = None
        self.error = None
        await self._set_state(State.CONNECTED)

    async def _set_state(self, state: State) -> None:
        if state is self.state and state is not State.RECONNECTING:
            return
        self.state = state
        await self._call(self._on_state, state, self.attempt)

    @staticmethod
    async def _call(callback: Callback | None, *args: object) -> None:
        if callback is None:
            return
        result = callback(*args)
        if asyncio.iscoroutine(result):
            await result
