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


class InvalidFields(TarsError):
    """Several fields of one request cannot be accepted (the items of a batch, say); all are named."""

    def __init__(self, problems: list[InvalidField]) -> None:
        super().__init__("; ".join(str(problem) for problem in problems))
        self.problems = problems


class Conflict(TarsError):
    pass


class Unavailable(TarsError):
    """A backing service (queue, database) cannot take the request right now."""


class IdempotencyKeyReused(TarsError):
    """An Idempotency-Key came back with a different request than the one it was first used for."""


class SchemaOutOfDate(TarsError):
    """The database is behind this code: `tars db upgrade` first."""
