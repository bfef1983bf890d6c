"""Spans reach an OTLP/HTTP collector (Jaeger's protocol) when TARS_OTLP_ENDPOINT names one. The
collector is the outside system here: a small HTTP server in the test that decodes what it is sent."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.e2e.conftest import Stack

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"


class Collector:
    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.received = threading.Condition()

    def spans(self) -> list[tuple[str, str, str]]:
        """(service.name, span name, trace id) of every span received."""
        found = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append((attributes.get("service.name", ""), span.name, span.trace_id.hex()))
        return found


@pytest.fixture
def collector() -> Iterator[tuple[Collector, str]]:
    received = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            ok = self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
            if ok:
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with received.received:
                    received.requests.append(request)
                    received.received.notify_all()
            self.send_response(200 if ok else 404)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield received, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_spans_are_exported_to_the_configured_collector(
    embedded_stack: Callable[..., Stack], collector: tuple[Collector, str]
) -> None:
    received, endpoint = collector
    stack = embedded_stack(TARS_OTLP_ENDPOINT=endpoint, TARS_REGION="eu-west-1")
    traceparent = f"00-{CLIENT_TRACE}-b7ad6b7169203331-01"
    assert httpx.get(f"{stack.dashboard_url}/api/v1/agents", headers={"traceparent": traceparent}).status_code == 401
    process = stack.services["tars-up"]
    process.terminate()  # stopping flushes what the batch processor still holds
    process.wait(30)
    with received.received:
        received.received.wait_for(lambda: bool(received.requests), timeout=10)
    spans = received.spans()
    assert ("tars-up", "GET /api/v1/agents", CLIENT_TRACE) in spans, spans
