"""The dashboard's live feed on /ws. Frames are JSON objects with a "type"."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from tars.api.realtime import Hub
from tars.runtime import Runtime
from tars.services.auth import AuthenticationFailed, Principal

router = APIRouter()

AUTH_TIMEOUT_SECONDS = 10.0
CHANNEL_PREFIXES = ("agent:", "run:")
PLAIN_CHANNELS = ("runs", "evaluations")
POLICY_VIOLATION = 1008


def _valid_channel(channel: object) -> bool:
    if not isinstance(channel, str) or len(channel) > 128:
        return False
    return channel in PLAIN_CHANNELS or any(channel.startswith(p) and len(channel) > len(p) for p in CHANNEL_PREFIXES)


@router.websocket("/ws")
async def live_feed(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime
    hub: Hub = websocket.app.state.hub
    await websocket.accept()
    principal = await _authenticate(websocket, runtime)
    if principal is None:
        return
    connection = hub.connect()
    last_pong = time.monotonic()

    async def read() -> None:
        nonlocal last_pong
        while True:
            frame = await _receive_frame(websocket)
            if frame is None:
                continue
            kind = frame.get("type")
            channel = frame.get("channel")
            if kind == "pong":
                last_pong = time.monotonic()
            elif kind == "ping":
                await websocket.send_json({"type": "pong"})
            elif kind in ("subscribe", "unsubscribe"):
                if not _valid_channel(channel):
                    await _error(
                        websocket, f"unknown channel {channel!r}; use runs, evaluations, agent:<id> or run:<id>"
                    )
                    continue
                assert isinstance(channel, str)
                if kind == "subscribe":
                    connection.channels.add(channel)
                    await websocket.send_json({"type": "subscribed", "channel": channel})
                else:
                    connection.channels.discard(channel)
                    await websocket.send_json({"type": "unsubscribed", "channel": channel})
            elif kind == "auth":
                await websocket.send_json({"type": "authenticated", "user": principal.username})
            else:
                await _error(websocket, f"unknown message type {kind!r}")

    async def write() -> None:
        while True:
            channel, event = await connection.outbox.get()
            if connection.overflowed:
                await websocket.close(code=POLICY_VIOLATION, reason="too slow; reconnect")
                return
            await websocket.send_json({"type": "event", "channel": channel, "event": event.type, "data": event.data})

    async def heartbeat() -> None:
        interval = runtime.settings.ws_ping_seconds
        timeout = runtime.settings.ws_pong_timeout_seconds
        while True:
            await asyncio.sleep(interval)
            sent = time.monotonic()
            await websocket.send_json({"type": "ping"})
            await asyncio.sleep(timeout)
            if last_pong < sent:
                await websocket.close(code=POLICY_VIOLATION, reason="no pong")
                return

    tasks = [asyncio.create_task(coro) for coro in (read(), write(), heartbeat())]
    try:
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


async def _authenticate(websocket: WebSocket, runtime: Runtime) -> Principal | None:
    token = websocket.query_params.get("token")
    if token is None:
        try:
            async with asyncio.timeout(AUTH_TIMEOUT_SECONDS):
                frame = await _receive_frame(websocket)
        except (TimeoutError, WebSocketDisconnect):
            frame = None
        token = frame.get("token") if frame and frame.get("type") == "auth" else None
    try:
        if not isinstance(token, str):
            raise AuthenticationFailed('authenticate first: send {"type":"auth","token":...}')
        principal = runtime.tokens.verify(token)
    except AuthenticationFailed as exc:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await _error(websocket, str(exc))
            await websocket.close(code=POLICY_VIOLATION, reason="unauthenticated")
        return None
    await websocket.send_json({"type": "authenticated", "user": principal.username})
    return principal


async def _receive_frame(websocket: WebSocket) -> dict[str, Any] | None:
    raw = await websocket.receive_text()
    try:
        frame = json.loads(raw)
    except ValueError:
        await _error(websocket, "frames must be JSON objects")
        return None
    if not isinstance(frame, dict):
        await _error(websocket, "frames must be JSON objects")
        return None
    return frame


async def _error(websocket: WebSocket, message: str) -> None:
    await websocket.send_json({"type": "error", "message": message})
