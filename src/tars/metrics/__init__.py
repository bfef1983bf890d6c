"""Prometheus metrics: the catalogue (``catalogue``), how stored work is counted (``counting``),
and gauges read at scrape time (``collectors``, which needs SQLAlchemy: a worker never imports it).
docs/metrics.md lists them all."""
