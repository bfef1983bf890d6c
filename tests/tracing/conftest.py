from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tars.tracing.setup import configure_tracing

# One per test process: OpenTelemetry's provider is global and set once.
_EXPORTER = InMemorySpanExporter()
configure_tracing("tests", "eu-west-1", processors=(SimpleSpanProcessor(_EXPORTER),))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans finished during the test, in the SDK's in-memory exporter."""
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()
