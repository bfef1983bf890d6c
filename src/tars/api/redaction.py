"""Secrets kept out of log lines: servers log request paths, and a WebSocket may carry its token in
the query string (``/ws?token=...``)."""

from __future__ import annotations

import logging
import re

_SECRETS = [
    # Query parameters that hold credentials.
    (
        re.compile(r"((?:^|[?&])(?:token|access_token|refresh_token|api_key)=)[^&\s\"']+", re.IGNORECASE),
        r"\1[redacted]",
    ),
    # API keys (their public prefix is kept: it is what operators look keys up by).
    (re.compile(r"\b(tars_[0-9a-f]{12})_[A-Za-z0-9_-]{20,}"), r"\1_[redacted]"),
    # Refresh tokens.
    (re.compile(r"\brt\.[0-9a-f]{32}\.[A-Za-z0-9_-]+"), "rt.[redacted]"),
    # Bearer credentials, should a header ever be logged.
    (re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1[redacted]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with its secrets replaced; drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def redact_server_logs() -> None:
    """Install the filter on the loggers uvicorn writes request lines to (idempotent)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactingFilter) for existing in logger.filters):
            logger.addFilter(RedactingFilter())
