"""Errors the domain and services raise; the API maps each to one HTTP status."""

from __future__ import annotations


class TarsError(Exception):
    """Base of every error T.A.R.S. raises on purpose."""


class NotFound(TarsError):
    def __init__(self, kind: str, key: object) -> None:
        super().__init__(f"{kind} {key!r} not found")
        self.kind = kind
        self.key = key


class InvalidField(TarsError):
    """A request is well-formed but one of its fields cannot be accepted."""

    def __init__(self, field: str, message: str, *, location: str = "body") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.location = location


class Conflict(TarsError):
    pass


class Unavailable(TarsError):
    """A backing service (queue, database) cannot take the request right now."""
