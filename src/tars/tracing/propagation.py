"""W3C trace context in and out of messages, and whether it arrived (``tars_trace_messages_total``)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tars.metrics.catalogue import TRACE_MESSAGES
from tars.tracing.setup import records_new_traces
from tars.tracing.setup import region as this_region

_W3C = TraceContextTextMapPropagator()
REGION_KEY = "tars-region"
_tracer = trace.get_tracer("tars")

Carrier = dict[str, str]
Attributes = Mapping[str, str | int | bool]


def current_carrier() -> Carrier:
    """The current span's context, to send with a message (or an HTTP request); empty without one."""
    carrier = trace_headers()
    if carrier:
        carrier[REGION_KEY] = this_region()
    return carrier


def message_carrier(name: str) -> Carrier:
    """The context a message is sent with: the current span's, or, sent from outside any (a
    background task), a PRODUCER span of its own, so that no message travels without a trace."""
    if trace.get_current_span().get_span_context().is_valid:
        return current_carrier()
    with producing(name) as carrier:
        return carrier


def trace_headers() -> dict[str, str]:
    """traceparent (and tracestate) for an HTTP request made under the current span."""
    headers: dict[str, str] = {}
    _W3C.inject(headers)
    return headers


@contextmanager
def producing(name: str, attributes: Attributes | None = None) -> Iterator[Carrier]:
    """A PRODUCER span for sending one message, and the carrier that continues it."""
    with _tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes) as span:
        span.set_attribute("tars.region", this_region())
        yield current_carrier()


@contextmanager
def consuming(
    name: str, carrier: Mapping[str, str] | None, *, transport: str, attributes: Attributes | None = None
) -> Iterator[Span]:
    """A CONSUMER span continuing the message's trace; counts whether the message carried one."""
    parent = _W3C.extract(dict(carrier or {}))
    continued = trace.get_current_span(parent).get_span_context().is_valid
    TRACE_MESSAGES.labels(transport, "true" if continued else "false").inc()
    token = context.attach(parent)
    try:
        with _tracer.start_as_current_span(name, kind=SpanKind.CONSUMER, attributes=attributes) as span:
            span.set_attribute("tars.region", this_region())
            sent_from = (carrier or {}).get(REGION_KEY)
            if sent_from:
                # A message that crossed regions keeps its trace, and says so.
                span.set_attribute("tars.producer_region", sent_from)
            yield span
    finally:
        context.detach(token)


@contextmanager
def serving(method: str, traceparent: str | None, tracestate: str | None) -> Iterator[Span]:
    """A SERVER span for one HTTP request, continuing the caller's trace when it sent one; named by
    its route template once routing has found it (``name_route``)."""
    parent = None
    if traceparent is not None:
        carrier = {"traceparent": traceparent, **({"tracestate": tracestate} if tracestate else {})}
        parent = _W3C.extract(carrier)
    elif not records_new_traces():
        # A trace begun here would be dropped by the sampler anyway: the same unrecorded span, with
        # fresh ids that carry the trace on (to log lines, and the jobs and events this request sends),
        # without the SDK's sampling work — a few percent of the hottest read's throughput.
        unrecorded = NonRecordingSpan(SpanContext(_new_id(128), _new_id(64), is_remote=False))
        with trace.use_span(unrecorded, end_on_exit=False):
            yield unrecorded
        return
    with _tracer.start_as_current_span(method, context=parent, kind=SpanKind.SERVER) as current:
        yield current


def _new_id(bits: int) -> int:
    while not (value := random.getrandbits(bits)):  # zero is the invalid id
        pass
    return value


def name_route(span: Span, method: str, route: str, status_code: int) -> None:
    if not span.is_recording():
        return
    span.update_name(f"{method} {route}")
    span.set_attributes({"http.request.method": method, "http.route": route, "http.response.status_code": status_code})
    if status_code >= 500:
        span.set_status(trace.Status(trace.StatusCode.ERROR))


@contextmanager
def span(name: str, attributes: Attributes | None = None) -> Iterator[Span]:
    """An INTERNAL span under the current one (training, evaluation, a database write)."""
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current
