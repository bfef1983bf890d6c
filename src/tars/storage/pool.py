"""How a process uses its database connections (kept apart so settings need not import SQLAlchemy)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PoolSettings:
    size: int = 10
    max_overflow: int = 10
    # Seconds a request waits for a free connection before giving up (503).
    timeout: float = 10.0
    # Milliseconds a statement may run on PostgreSQL (0: no limit); a runaway query is cancelled.
    statement_timeout_ms: int = 0
