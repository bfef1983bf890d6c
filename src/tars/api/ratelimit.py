"""Rate limits per principal and route class, on the `limits` library's sliding window counters.

A request is counted against its principal (the user its bearer token names) or, without a valid
token, against its client address; login is always counted per address, and much more strictly.
Distributed, the counters live in Redis, so every replica spends one budget; embedded, in memory.
A limiter that cannot reach Redis lets requests through: an outage of the counters must not take
the APIs down with it.
"""

from __future__ import annotations

import logging
import math
import re
import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tars.api.deps import authenticate_off_loop, presented_credential
from tars.services.auth import AuthenticationFailed
from tars.services.auth.credentials import Authenticator
from tars.settings import Settings

log = logging.getLogger(__name__)

LOGIN_PATH = "/api/v1/auth/login"
_WORKER_REPORT_PATH = re.compile(r"^/api/v1/(runs/[^/]+/attempts(/.*)?|workers/recover)$")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RateLimits:
    def __init__(self, settings: Settings, storage: Storage) -> None:
        """The settings' limits, counted in ``storage`` (tars.wiring picks memory or Redis)."""
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._limits: dict[str, list[RateLimitItem]] = {
            "login": parse_many(settings.rate_limit_login),
            "read": parse_many(settings.rate_limit_read),
            "write": parse_many(settings.rate_limit_write),
            "login-failure": parse_many(settings.rate_limit_login_failures),
        }

    async def hit(self, route_class: str, identity: str) -> tuple[bool, RateLimitItem, int, float]:
        """Count one request; returns (allowed, the tightest limit, requests left, seconds to reset)."""
        allowed, tightest, remaining, reset = True, self._limits[route_class][0], math.inf, 0.0
        for item in self._limits[route_class]:
            if not await self._limiter.hit(item, route_class, identity):
                allowed = False
            stats = await self._limiter.get_window_stats(item, route_class, identity)
            if stats.remaining < remaining:
                tightest, remaining, reset = item, stats.remaining, max(0.0, stats.reset_time - time.time())
        return allowed, tightest, int(remaining), reset

    async def wait_needed(self, route_class: str, identity: str) -> float:
        """Seconds until ``identity`` may try again (0: now), without counting a request."""
        waits = [
            max(0.0, (await self._limiter.get_window_stats(item, route_class, identity)).reset_time - time.time())
            for item in self._limits[route_class]
            if not await self._limiter.test(item, route_class, identity)
        ]
        return max(waits, default=0.0)

    async def count(self, route_class: str, identity: str) -> None:
        for item in self._limits[route_class]:
            await self._limiter.hit(item, route_class, identity)


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limits: RateLimits, authenticator: Authenticator) -> None:
        self.app = app
        self.limits = limits
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/") or _is_worker_report(scope):
            await self.app(scope, receive, send)
            return
        route_class, identity = await self._classify(scope)
        try:
            allowed, item, remaining, reset = await self.limits.hit(route_class, identity)
        except Exception as exc:  # the counters are unreachable: serve rather than fail
            log.warning("rate limiter unavailable (%s); request let through", exc)
            await self.app(scope, receive, send)
            return
        headers = [
            (b"ratelimit-limit", str(item.amount).encode()),
            (b"ratelimit-remaining", str(max(0, remaining)).encode()),
            (b"ratelimit-reset", str(math.ceil(reset)).encode()),
        ]
        if not allowed:
            await _too_many_requests(send, headers, route_class, item, reset)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _classify(self, scope: Scope) -> tuple[str, str]:
        client = scope.get("client")
        address = f"address:{client[0] if client else 'unknown'}"
        if scope["path"] == LOGIN_PATH:
            return "login", address
        route_class = "read" if scope["method"] in READ_METHODS else "write"
        credential = presented_credential(Request(scope))
        if credential is None:
            return route_class, address
        try:
            principal = await authenticate_off_loop(self.authenticator, credential)
        except AuthenticationFailed:
            return route_class, address  # counted by address; the route answers 401
        except Exception as exc:  # the database is away: the route will say so
            log.warning("could not identify a request for rate limiting: %s", exc)
            return route_class, address
        # The route's own dependency takes it from here instead of authenticating again.
        scope.setdefault("state", {})["principal"] = principal
        return route_class, f"user:{principal.user_id}"


def _is_worker_report(scope: Scope) -> bool:
    """A worker recording its attempt (tars.api.routes.attempts): authenticated machine traffic
    whose volume training sets; limiting it would stall runs, not protect anything."""
    return _WORKER_REPORT_PATH.match(scope["path"]) is not None


async def _too_many_requests(
    send: Send, headers: list[tuple[bytes, bytes]], route_class: str, item: RateLimitItem, reset: float
) -> None:
    retry_after = max(1, math.ceil(reset))
    body = (
        f'{{"detail":"rate limit of {item.amount} per {item.multiples} {item.GRANULARITY.name} exceeded '
        f'for {route_class} requests; retry in {retry_after} s"}}'
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
