"""Request metrics and a SERVER span (continuing the caller's traceparent) by route template, never
the raw path; and the /metrics endpoint."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tars.api.deps import Public
from tars.metrics.catalogue import HTTP_DURATION, HTTP_REQUESTS
from tars.tracing.propagation import name_route, serving
from tars.version import VERSION

UNMATCHED_ROUTE = "<unmatched>"


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        # The labelled children by (method, route template, status): finding them costs a lock and a
        # tuple per request otherwise. Bounded: templates and statuses are few, never raw paths.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def _record(self, method: str, template: str, status_code: int, seconds: float) -> None:
        key = (method, template, status_code)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                HTTP_REQUESTS.labels(self.service, method, template, str(status_code), VERSION),
                HTTP_DURATION.labels(self.service, method, template, VERSION),
            )
        requests, durations = children
        requests.inc()
        durations.observe(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500
        method = str(scope["method"])

        async def send_and_record(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
            await send(message)

        traceparent = tracestate = None
        for name, value in scope["headers"]:
            if name == b"traceparent":
                traceparent = value.decode("latin-1")
            elif name == b"tracestate":
                tracestate = value.decode("latin-1")
        with serving(method, traceparent, tracestate) as span:
            try:
                await self.app(scope, receive, send_and_record)
            finally:
                route = scope.get("route")
                template = getattr(route, "path", UNMATCHED_ROUTE)
                name_route(span, method, template, status_code)
                self._record(method, template, status_code, time.perf_counter() - started)


router = APIRouter(tags=["observability"], dependencies=[Public])


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeadersMiddleware:
    """Headers every response carries: no MIME sniffing, no framing, no referrer leaks."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
