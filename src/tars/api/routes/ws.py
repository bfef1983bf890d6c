"""The dashboard's live feed on /ws; the protocol is written down in docs/websocket.md."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from tars.api.deps import Public
from tars.api.realtime import Connection, Hub, Live, Subscribe, Unsubscribe, closing, count_sent
from tars.domain.events import is_channel
from tars.metrics.catalogue import WS_EVENTS_SENT, WS_SLOW_CONSUMERS
from tars.services.auth import AuthenticationFailed
from tars.services.runtime import Runtime

router = APIRouter(dependencies=[Public])

AUTH_TIMEOUT_SECONDS = 10.0
POLICY_VIOLATION = 1008


class BadFrame(ValueError):
    pass


@router.websocket("/ws")
async def live_feed(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime
    hub: Hub = websocket.app.state.hub
    settings = runtime.settings
    await websocket.accept()
    connection = await _connect(websocket, hub)
    if connection is None:
        return
    principal = connection.principal
    last_pong = time.monotonic()

    async def read() -> None:
        nonlocal last_pong
        while True:
            try:
                frame = _parse(await websocket.receive_text())
                kind = frame.get("type")
                if kind == "pong":
                    last_pong = time.monotonic()
                elif kind == "ping":
                    await websocket.send_json({"type": "pong"})
                elif kind in ("subscribe", "unsubscribe"):
                    connection.request(_subscription(frame))
                elif kind == "auth":
                    await websocket.send_json({"type": "authenticated", "user": principal.username})
                else:
                    raise BadFrame(f"unknown message type {kind!r}; use subscribe, unsubscribe, pong or ping")
            except BadFrame as exc:
                await websocket.send_json({"type": "error", "message": str(exc)})

    async def write() -> None:
        while True:
            command = await connection.outbox.get()
            if connection.overflowed:
                WS_SLOW_CONSUMERS.inc()
                await websocket.close(code=POLICY_VIOLATION, reason="too slow; reconnect")
                return
            if isinstance(command, Live):
                follows = connection.follows(command)
                if follows:
                    # Most frames are the next live event of a channel: sent without building a list.
                    await websocket.send_text(hub.frames.event_text(command.channel, command.event))
                    WS_EVENTS_SENT.inc()
                    continue
                frames = [] if follows is None else await connection.fill_gap(command)
            else:
                frames = await connection.frames(command)
            for frame in frames:
                await websocket.send_text(hub.frames.text(frame))
            count_sent(frames)

    async def heartbeat() -> None:
        await asyncio.sleep(settings.ws_ping_seconds)
        while True:
            sent = time.monotonic()
            await websocket.send_json({"type": "ping"})
            await asyncio.sleep(settings.ws_pong_timeout_seconds)
            if last_pong < sent:
                await websocket.close(code=POLICY_VIOLATION, reason="no pong")
                return
            # The next ping an interval after this one, not after the pong's deadline: a client gives up
            # after interval + timeout of silence, which pings every interval + timeout only just met.
            await asyncio.sleep(max(0.0, settings.ws_ping_seconds - settings.ws_pong_timeout_seconds))

    async def hold() -> None:
        # Until the credential it connected with is revoked or expires (the watch decides which).
        code, reason = closing(await connection.access.ended)
        await websocket.close(code=code, reason=reason)

    tasks: list[asyncio.Task[None]] = []
    try:
        await websocket.send_json(
            {
                "type": "authenticated",
                "user": principal.username,
                "role": principal.role.value,
                "heartbeat": {"interval": settings.ws_ping_seconds, "timeout": settings.ws_pong_timeout_seconds},
            }
        )
        tasks = [asyncio.create_task(coro) for coro in (read(), write(), heartbeat(), hold())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        hub.disconnect(connection)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
        if websocket.application_state != WebSocketState.DISCONNECTED:
            # The other side may be gone already (a server shutting down closes every socket first).
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close()


def _parse(raw: str) -> dict[str, Any]:
    try:
        frame = json.loads(raw)
    except ValueError:
        raise BadFrame("frames must be JSON objects") from None
    if not isinstance(frame, dict):
        raise BadFrame("frames must be JSON objects")
    return frame


def _subscription(frame: dict[str, Any]) -> Subscribe | Unsubscribe:
    channel = frame.get("channel")
    if not is_channel(channel):
        raise BadFrame(f"unknown channel {channel!r}; use runs, evaluations, insights, agent:<id> or run:<id>")
    assert isinstance(channel, str)
    if frame["type"] == "unsubscribe":
        return Unsubscribe(channel)
    last_event_id = frame.get("last_event_id")
    if last_event_id is not None and (
        not isinstance(last_event_id, int) or isinstance(last_event_id, bool) or last_event_id < 0
    ):
        raise BadFrame(f"last_event_id must be a non-negative integer, not {last_event_id!r}")
    return Subscribe(channel, last_event_id)


async def _connect(websocket: WebSocket, hub: Hub) -> Connection | None:
    token = websocket.query_params.get("token")
    if token is None:
        try:
            async with asyncio.timeout(AUTH_TIMEOUT_SECONDS):
                frame: dict[str, Any] | None = _parse(await websocket.receive_text())
        except (TimeoutError, WebSocketDisconnect, BadFrame):
            frame = None
        token = frame.get("token") if frame and frame.get("type") == "auth" else None
    try:
        if not isinstance(token, str):
            raise AuthenticationFailed('authenticate first: send {"type":"auth","token":...}')
        return await hub.connect(token)
    except AuthenticationFailed as exc:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.send_json({"type": "error", "message": str(exc)})
            await websocket.close(code=POLICY_VIOLATION, reason="unauthenticated")
        return None
