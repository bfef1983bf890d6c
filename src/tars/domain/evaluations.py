"""Evaluations: what is submitted, what is stored, and what is read back of them.

`Evaluation` is the one record of a stored evaluation: API answers are derived from it, events say
what it holds, and it is a tuple in the table's column order, so COPY takes it as it is.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, Protocol

from tars.domain.errors import InvalidField


class EvaluationFacts(Protocol):
    """What is known of an evaluation, whatever holds it (a record, one just submitted)."""

    @property
    def agent_id(self) -> str: ...
    @property
    def environment(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def reward(self) -> float: ...
    @property
    def duration_ms(self) -> float | None: ...
    @property
    def status(self) -> str: ...


class NewEvaluation(NamedTuple):
    """An evaluation to store: what a client submits or a worker reports (a tuple: a thousand are
    made per batch, and a frozen dataclass costs nearly three times as much to make)."""

    agent_id: str
    environment: str
    reward: float
    region: str
    episode_length: int | None = None
    duration_ms: float | None = None
    status: str = "completed"
    run_id: str | None = None
    created_at: datetime | None = None  # now, if not given


class Evaluation(NamedTuple):
    """A stored evaluation, its fields in the table's column order."""

    id: int
    agent_id: str
    run_id: str | None
    environment: str
    region: str
    reward: float
    episode_length: int | None
    duration_ms: float | None
    status: str
    created_at: datetime


EVALUATION_FIELDS: tuple[str, ...] = Evaluation._fields


@dataclass(frozen=True)
class EvaluationFilter:
    """Which evaluations a page lists: all of those given must match; since inclusive, until not."""

    agent_id: str | None = None
    environment: str | None = None
    region: str | None = None
    run_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class Position(NamedTuple):
    """Where a page ends in the newest-first order: the last evaluation's time and id."""

    created_at: datetime
    id: int


# An evaluation's fields by name (the keys of Evaluation._fields), as a page is read for JSON.
EvaluationFields = dict[str, Any]


@dataclass(frozen=True)
class EvaluationPage:
    items: list[Evaluation]
    next_cursor: str | None


def encode_cursor(position: Position) -> str:
    raw = f"{position.created_at.isoformat()}|{position.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, row_id = base64.urlsafe_b64decode(padded.encode()).decode().split("|")
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("cursor time has no zone")
        if not 0 < int(row_id) < 2**63:
            raise ValueError("cursor id out of range")
        # Out of range in UTC (OverflowError), it could not be compared with the stored times.
        return Position(moment.astimezone(UTC), int(row_id))
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidField("cursor", "not a cursor this API returned", location="query") from exc


# Summaries and chart series


@dataclass(frozen=True)
class EvaluationScope:
    """Which evaluations a summary or series covers: all of those given must match."""

    agent_id: str | None = None
    environment: str | None = None
    region: str | None = None


Interval = Literal["hour", "day"]


@dataclass(frozen=True)
class EvaluationStatistics:
    """Of some evaluations: rewards of the completed ones, durations from a histogram (within a few percent)."""

    count: int
    failed: int
    mean_reward: float | None
    std_reward: float | None
    min_reward: float | None
    max_reward: float | None
    mean_duration_ms: float | None
    p50_duration_ms: float | None
    p95_duration_ms: float | None


@dataclass(frozen=True)
class EvaluationGroup(EvaluationStatistics):
    """The statistics of one group; the keys it is not grouped by are None."""

    agent_id: str | None = None
    environment: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class EvaluationPoint(EvaluationStatistics):
    """The statistics of one interval of a series, from its start."""

    at: datetime = field(kw_only=True)


@dataclass(frozen=True)
class EvaluationSummary:
    since: datetime
    until: datetime
    groups: list[EvaluationGroup]


@dataclass(frozen=True)
class EvaluationSeries:
    since: datetime
    until: datetime
    interval: Interval
    points: list[EvaluationPoint]
