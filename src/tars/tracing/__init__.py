"""OpenTelemetry tracing: one provider per process (``setup``), W3C trace context carried through
every message (``propagation``).

A message's carrier is a plain ``dict[str, str]`` (``traceparent``, ``tracestate``, and the region
it was sent from), so the domain and the wire formats never import OpenTelemetry.
"""
