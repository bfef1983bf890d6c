"""The live feed under restarts and under load: reconnection time, events lost, broadcast latency.

A real `tars serve dashboard-api` process (distributed mode: Redis, a SQLite file) and, in this
process, T.A.R.S.'s own Python ReconnectingWebSocketClient and plain WebSocket clients.

    reconnect: evaluations are stored and published every 20 ms while dashboard-api is restarted
        N times (SIGTERM, or SIGKILL with --kill); prints the time from the new process accepting
        connections to the client having re-subscribed (p50/p95), the whole outage, and how many
        events were lost or duplicated across all restarts.
    fanout: N clients subscribed to `evaluations`; events are published at a steady rate, each
        carrying its publish time; prints the broadcast latency (publish to receipt) p50/p95/p99.

    .venv/bin/python benchmarks/live_feed.py reconnect [--restarts 20] [--kill]
    .venv/bin/python benchmarks/live_feed.py fanout [--clients 1000] [--events 60] [--rate 1]
    (both take --redis-url, default redis://127.0.0.1:6379/15, which is emptied first; `make install`
    brings all they need)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis
from _harness import emit, free_port

from tars.client.live import LiveEvent, ReconnectingWebSocketClient, State
from tars.domain.evaluations import NewEvaluation
from tars.domain.events import Event
from tars.domain.users import Role
from tars.services.auth.users import add_user as create_user
from tars.services.runtime import Runtime
from tars.settings import Settings
from tars.storage.database import transaction
from tars.wiring.runtime import build_runtime


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
        "p99": round(percentile(values, 99), 2),
        "max": round(max(values), 2),
    }


class Dashboard:
    """`tars serve dashboard-api` as a process that can be restarted."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.env = env
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> float:
        """Start it; returns the moment it answered its health check."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tars", "serve", "dashboard-api", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=0.5).status_code == 200:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            assert self.process.poll() is None, self.log_path.read_text()[-2000:]
            time.sleep(0.005)
        raise RuntimeError("dashboard-api did not start")

    def stop(self, kill: bool) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.process.wait(30)


@contextmanager
def deployment(redis_url: str, database_url: str | None = None) -> Iterator[tuple[Runtime, Dashboard, str]]:
    """A runtime to publish with, a dashboard-api process (started by the caller, stopped here)
    on the same Redis and database (default: a SQLite file), and a viewer's token."""
    redis.Redis.from_url(redis_url).flushdb()
    with tempfile.TemporaryDirectory(prefix="tars-bench-live-") as folder:
        data_dir = Path(folder)
        secret = "bench-" + os.urandom(24).hex()
        settings = Settings(
            data_dir=data_dir, jwt_secret=secret, redis_url=redis_url, database_url=database_url, log_level="WARNING"
        )
        runtime = build_runtime(settings, migrate_schema=True)
        with transaction(runtime.sessions) as session:
            user = create_user(session, "bench-viewer", "bench-password-long-enough", Role.VIEWER)
            token = runtime.security.tokens.issue(user).access_token
        env = os.environ | {
            "TARS_DATA_DIR": str(data_dir),
            "TARS_JWT_SECRET": secret,
            "TARS_REDIS_URL": redis_url,
            "TARS_LOG_LEVEL": "WARNING",
        }
        if database_url is not None:
            env["TARS_DATABASE_URL"] = database_url
        dashboard = Dashboard(env, free_port(), data_dir / "dashboard-api.log")
        try:
            yield runtime, dashboard, token
        finally:
            dashboard.stop(kill=False)
            runtime.close()


class EvaluationPublisher:
    """Stores and publishes an evaluation every 20 ms in a thread, remembering each one's id."""

    def __init__(self, runtime: Runtime) -> None:
        self.published: list[int] = []
        self._runtime = runtime
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stopping.wait(0.02):
            submission = NewEvaluation("ppo", "CartPole-v1", float(len(self.published)), "us-west-2")
            self.published.append(self._runtime.evaluations.store(submission).id)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[int]:
        self._stopping.set()
        self._thread.join()
        return self.published


class ClientThread:
    def __init__(self, url: str, token: str) -> None:
        self.received: list[int] = []
        self.resets = 0
        self.client = ReconnectingWebSocketClient(
            url, token, ["evaluations"], on_event=self._event, on_reset=self._reset
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self.client.run(),), daemon=True)
        self._thread.start()

    def _event(self, event: LiveEvent) -> None:
        self.received.append(int(event.data["id"]))

    def _reset(self, _channel: str) -> None:
        self.resets += 1

    def wait_connected(self, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while self.client.state is not State.CONNECTED:
            if time.monotonic() > deadline:
                raise RuntimeError(f"client not connected: {self.client.state} {self.client.error}")
            time.sleep(0.001)
        return time.monotonic()

    def wait_disconnected(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.client.state is State.CONNECTED and time.monotonic() < deadline:
            time.sleep(0.001)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.client.stop(), self._loop).result(5)
        self._thread.join(5)


def reconnect(args: argparse.Namespace) -> dict[str, Any]:
    reconnections: list[float] = []
    outages: list[float] = []
    with deployment(args.redis_url) as (runtime, dashboard, token):
        dashboard.start()
        client = ClientThread(dashboard.ws_url, token)
        publisher = EvaluationPublisher(runtime)
        client.wait_connected()
        publisher.start()
        for _ in range(args.restarts):
            time.sleep(0.5)
            stopped_at = time.monotonic()
            dashboard.stop(kill=args.kill)
            client.wait_disconnected()
            ready_at = dashboard.start()
            connected_at = client.wait_connected()
            reconnections.append(max(0.0, connected_at - ready_at) * 1000)
            outages.append((connected_at - stopped_at) * 1000)
        time.sleep(0.5)
        published = publisher.stop()
        deadline = time.monotonic() + 15
        while len(set(client.received)) < len(published) and time.monotonic() < deadline:
            time.sleep(0.05)
        client.close()
    received = client.received
    return {
        "benchmark": "live_feed_reconnect",
        "client": "python ReconnectingWebSocketClient",
        "restarts": args.restarts,
        "signal": "SIGKILL" if args.kill else "SIGTERM",
        "reconnect_ms_after_server_ready": summary(reconnections),
        "outage_ms_stop_to_resubscribed": summary(outages),
        "events_published": len(published),
        "events_lost": len(set(published) - set(received)),
        "events_duplicated": len(received) - len(set(received)),
        "out_of_order": sum(1 for a, b in itertools.pairwise(received) if b < a),
        "resets": client.resets,
        "targets": {"reconnect_p95_ms": "< 1000", "events_lost": 0},
    }


class FrameReader(asyncio.Protocol):
    """A WebSocket client at its leanest — an asyncio protocol parsing server frames by hand —
    so that a thousand of them in one process measure the server's broadcast, not their own cost."""

    def __init__(self, path: str, on_text: Callable[[FrameReader, bytes], None]) -> None:
        self.path = path
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self.upgraded = asyncio.get_running_loop().create_future()
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self.upgraded.done():
            head, separator, rest = self._buffer.partition(b"\r\n\r\n")
            if not separator:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(RuntimeError(head.decode(errors="replace")))
                return
            self.upgraded.set_result(None)
            self._buffer = rest
        while len(self._buffer) >= 2:
            opcode, length, offset = self._buffer[0] & 0x0F, self._buffer[1] & 0x7F, 2
            if length == 126:
                length, offset = int.from_bytes(self._buffer[2:4], "big"), 4
            elif length == 127:
                length, offset = int.from_bytes(self._buffer[2:10], "big"), 10
            if len(self._buffer) < offset + length:
                return
            payload, self._buffer = self._buffer[offset : offset + length], self._buffer[offset + length :]
            if opcode == 0x1:
                self.on_text(self, payload)

    def send_text(self, text: str) -> None:
        assert self.transport is not None
        payload, mask = text.encode(), os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        header = (
            bytes([0x81, 0x80 | len(payload)])
            if len(payload) < 126
            else bytes([0x81, 0xFE, *len(payload).to_bytes(2, "big")])
        )
        self.transport.write(header + mask + masked)


async def _fanout(args: argparse.Namespace, runtime: Runtime, port: int, token: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    received = [0]
    subscribed = [0]
    all_subscribed = asyncio.Event()
    done = asyncio.Event()
    expected = args.clients * args.events

    def on_text(reader: FrameReader, payload: bytes) -> None:
        arrived = time.time()
        if payload.startswith(b'{"type":"event"') or b'"type": "event"' in payload[:20]:
            data = json.loads(payload)["data"]
            latencies.append((arrived - data["sent_at"]) * 1000)
            received[0] += 1
            if received[0] == expected:
                done.set()
            return
        frame = json.loads(payload)
        if frame["type"] == "authenticated":
            reader.send_text(json.dumps({"type": "subscribe", "channel": "evaluations"}))
        elif frame["type"] == "subscribed":
            subscribed[0] += 1
            if subscribed[0] == args.clients:
                all_subscribed.set()
        elif frame["type"] == "ping":
            reader.send_text('{"type":"pong"}')

    connect_begun = time.monotonic()
    for index in range(args.clients):
        _transport, reader = await loop.create_connection(
            lambda: FrameReader(f"/ws?token={token}", on_text), "127.0.0.1", port
        )
        await reader.upgraded
        if index % 50 == 49:
            await asyncio.sleep(0.05)  # a crowd arriving, not a single burst of handshakes
    await asyncio.wait_for(all_subscribed.wait(), 120)
    connect_seconds = time.monotonic() - connect_begun

    def publish() -> None:
        for number in range(args.events):
            runtime.bus.publish(Event("evaluation.created", {"id": number, "sent_at": time.time()}))
            time.sleep(1 / args.rate)

    await asyncio.to_thread(publish)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 30)
    return {
        "benchmark": "live_feed_fanout",
        "clients": args.clients,
        "events": args.events,
        "rate_per_second": args.rate,
        "seconds_to_connect_and_subscribe_all": round(connect_seconds, 2),
        "frames_expected": expected,
        "frames_received": received[0],
        "broadcast_latency_ms": summary(latencies),
        "targets": {"broadcast_latency_p95_ms": "< 100"},
    }


def fanout(args: argparse.Namespace) -> dict[str, Any]:
    with deployment(args.redis_url) as (runtime, dashboard, token):
        dashboard.start()
        return asyncio.run(_fanout(args, runtime, dashboard.port, token))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    commands = parser.add_subparsers(dest="command", required=True)
    restart = commands.add_parser("reconnect")
    restart.add_argument("--restarts", type=int, default=20)
    restart.add_argument("--kill", action="store_true", help="SIGKILL instead of SIGTERM")
    load = commands.add_parser("fanout")
    load.add_argument("--clients", type=int, default=1000)
    load.add_argument("--events", type=int, default=60)
    load.add_argument("--rate", type=float, default=1.0)
    args = parser.parse_args()
    emit(reconnect(args) if args.command == "reconnect" else fanout(args))


if __name__ == "__main__":
    main()
