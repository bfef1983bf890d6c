"""The process's tracer provider: always an SDK provider, so contexts propagate even when nothing
is exported (a no-op provider would hand every consumer an invalid parent); spans go to an OTLP
endpoint when one is configured (``TARS_OTLP_ENDPOINT``, e.g. Jaeger's http://host:4318)."""

from __future__ import annotations

import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from tars.version import VERSION

_lock = threading.Lock()
_provider: TracerProvider | None = None
# The region this process runs in, written on every message it sends. Process-wide like the
# provider itself (OpenTelemetry's is global): every producer would otherwise need it passed down.
_region = "unknown"
# Whether a trace begun in this process can be recorded (False: nowhere to export spans).
_records_new_traces = False


def region() -> str:
    return _region


def configure_tracing(
    service: str,
    region: str,
    *,
    otlp_endpoint: str | None = None,
    sample_ratio: float = 1.0,
    processors: tuple[SpanProcessor, ...] = (),
) -> TracerProvider:
    """Set the process's provider once; later calls add their processors to it (tests, `tars up`)."""
    global _provider, _region, _records_new_traces
    with _lock:
        _region = region
        if _provider is None:
            resource = Resource.create(
                {"service.name": f"tars-{service}", "service.version": VERSION, "cloud.region": region}
            )
            # Parent-based: a consumer records exactly when its producer did, so traces are whole. With
            # nowhere to send spans, new traces are not recorded at all (their contexts still travel):
            # a recorded span costs a fifth of the hot list endpoint's throughput.
            exporting = bool(otlp_endpoint or processors)
            sampler = ParentBased(TraceIdRatioBased(sample_ratio if exporting else 0.0))
            _records_new_traces = exporting and sample_ratio > 0
            _provider = TracerProvider(resource=resource, sampler=sampler)
            if otlp_endpoint:
                _provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(otlp_endpoint)))
            trace.set_tracer_provider(_provider)
        for processor in processors:
            _provider.add_span_processor(processor)
        return _provider


def records_new_traces() -> bool:
    """False when the process's provider drops every trace begun here: nowhere to export them."""
    return _provider is None or _records_new_traces


def _otlp_exporter(endpoint: str) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")


def shutdown_tracing() -> None:
    """Flush what is left to export (on the way out of a process)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis=5_000)
