"""How a report travels between a separate worker and the orchestration service: one schema,
derived from the domain record itself, writes it on one side and reads it back on the other."""

from __future__ import annotations

from pydantic import TypeAdapter

from tars.domain.progress import Report

REPORT_SCHEMA: TypeAdapter[Report] = TypeAdapter(Report)
