"""One trace from a client's request to the worker that trains the job it queued, on both backends;
and logs written under a span carry its ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence

from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tars.services.runtime import Runtime
from tars.tracing.logs import JsonFormatter
from tars.tracing.propagation import span
from tars.worker.loop import Worker
from tests.waiting import eventually

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"


def test_a_training_request_and_the_training_it_causes_are_one_trace(
    runtime: Runtime,
    orchestration: TestClient,
    auth: dict[str, dict[str, str]],
    worker: Worker,
    spans: InMemorySpanExporter,
) -> None:
    headers = {**auth["operator"], "traceparent": TRACEPARENT}
    response = orchestration.post("/api/v1/train", json={"agent_id": "dqn", "episodes": 2}, headers=headers)
    assert response.status_code == 200, response.text
    run_id = response.json()["run_id"]
    eventually(
        lambda: orchestration.get(f"/api/v1/runs/{run_id}", headers=auth["viewer"]).json()["status"] == "succeeded",
        60,
        interval=0.1,
        message=f"run {run_id} to succeed",
    )

    def traced() -> list[ReadableSpan]:
        return [s for s in spans.get_finished_spans() if s.context.trace_id == int(CLIENT_TRACE, 16)]

    # The worker's spans end just after it records the outcome.
    eventually(lambda: {"job.process", "job.train"} <= {s.name for s in traced()}, message="the worker's spans")
    trace = traced()
    by_name = {s.name: s for s in trace}
    server, producer = by_name["POST /api/v1/train"], by_name["job.enqueue"]
    consumer, training = by_name["job.process"], by_name["job.train"]
    assert server.kind is SpanKind.SERVER and server.parent is not None
    assert server.parent.span_id == int("00f067aa0ba902b7", 16)  # the client's span
    assert descends(producer, server, trace)  # under FastAPI's own endpoint span
    assert consumer.kind is SpanKind.CONSUMER and consumer.parent is not None
    assert consumer.parent.span_id == producer.context.span_id
    assert training.parent is not None and training.parent.span_id == consumer.context.span_id
    assert server.attributes is not None and server.attributes["http.route"] == "/api/v1/train"


def test_the_live_event_an_evaluation_causes_is_relayed_in_the_submitters_trace(
    dashboard: TestClient, auth: dict[str, dict[str, str]], spans: InMemorySpanExporter
) -> None:
    body = {"agent_id": "ppo", "environment": "CartPole-v1", "reward": 12.0}
    headers = {**auth["operator"], "traceparent": TRACEPARENT}
    token = auth["viewer"]["Authorization"].removeprefix("Bearer ")
    # Someone watching: a replica relays events only while a WebSocket is open on it.
    with dashboard.websocket_connect(f"/ws?token={token}") as ws:
        assert ws.receive_json()["type"] == "authenticated"
        ws.send_json({"type": "subscribe", "channel": "evaluations"})
        assert ws.receive_json()["type"] == "subscribed"
        assert dashboard.post("/api/v1/evaluations", json=body, headers=headers).status_code == 201
        assert ws.receive_json()["event"] == "evaluation.created"
    relays = eventually(
        lambda: [s for s in spans.get_finished_spans() if s.name == "event.relay"], message="the event to be relayed"
    )
    server = next(s for s in spans.get_finished_spans() if s.name == "POST /api/v1/evaluations")
    [relay] = relays
    assert relay.kind is SpanKind.CONSUMER and relay.context.trace_id == int(CLIENT_TRACE, 16)
    assert descends(relay, server, list(spans.get_finished_spans()))


def descends(span_: ReadableSpan, ancestor: ReadableSpan, spans: Sequence[ReadableSpan]) -> bool:
    by_id = {s.context.span_id: s for s in spans}
    current: ReadableSpan | None = span_
    while current is not None and current.parent is not None:
        if current.parent.span_id == ancestor.context.span_id:
            return True
        current = by_id.get(current.parent.span_id)
    return False


def test_json_logs_carry_the_trace_and_span_they_were_written_under(spans: InMemorySpanExporter) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tars.tests.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("outside")
        with span("work") as current:
            logger.info("inside %s", "a span")
    finally:
        logger.removeHandler(handler)
    outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert outside["message"] == "outside" and "trace_id" not in outside
    assert inside["message"] == "inside a span" and inside["level"] == "INFO"
    assert inside["trace_id"] == format(current.get_span_context().trace_id, "032x")
    assert inside["span_id"] == format(current.get_span_context().span_id, "016x")
