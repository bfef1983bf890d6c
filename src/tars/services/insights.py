"""Insights: what the insight engine found, kept as one record per condition of a subject, and what
operators do with them.

The engine hands `InsightService.apply` what its detectors found (`Observation`s); the service
opens, updates and resolves the records and announces each change on the live feed. Applying is
idempotent (a replayed observation changes nothing and announces nothing) and safe when engine
replicas apply at once: the database holds at most one unresolved insight per kind and subject (a
partial unique index), and a transaction that loses a race to another is run again.
"""

from __future__ import annotations

import builtins
import logging
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from pydantic import TypeAdapter
from sqlalchemy.orm import Session

from tars.bus.base import EventBus
from tars.domain.audit import AuditAction
from tars.domain.errors import InvalidField
from tars.domain.evaluations import Position, decode_cursor, encode_cursor
from tars.domain.events import Event, EventType
from tars.domain.insights import (
    MAX_NOTE_LENGTH,
    Finding,
    FindingKind,
    FindingState,
    Insight,
    InsightFilter,
    InsightPage,
    InsightResolved,
    InsightState,
    Observation,
    Severity,
)
from tars.domain.users import Principal
from tars.services import audit
from tars.storage import insights
from tars.storage.database import SessionFactory, transaction
from tars.storage.insights import subject_key
from tars.storage.types import utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_PAGE = 500
# Times a transaction is run before a lost race is the caller's problem: each retry finds what the
# winner stored, so a second attempt all but always goes through.
ATTEMPTS = 5


@cache
def _insight_json() -> TypeAdapter[Insight]:
    return TypeAdapter(Insight)  # built on first use: most processes holding a runtime never need it


def insight_data(insight: Insight) -> dict[str, Any]:
    """An insight as JSON, exactly as the API answers it: what its events carry."""
    data: dict[str, Any] = _insight_json().dump_python(insight, mode="json")
    return data


class _LostRace(Exception):
    """Another transaction stored, then resolved, the insight this one was about to open."""


@dataclass(frozen=True)
class _Change:
    order: int
    insight: Insight
    # None: a quiet change (a dismissed insight's evidence brought up to date).
    event: str | None


class InsightService:
    def __init__(self, sessions: SessionFactory, bus: EventBus) -> None:
        self.sessions = sessions
        self.bus = bus

    # what the engine calls

    def apply(self, observations: Sequence[Observation]) -> builtins.list[Insight]:
        """Open, update or resolve the insight of each observation's kind and subject, in one
        transaction, and announce the changes; the insights changed, in the order of the
        observations (those that changed nothing — replays, stale findings — left out).

        - an open finding without an unresolved insight opens one (``insight.opened``), unless the
          subject's last insight of that kind cleared at or after the finding's ``last_seen_at``
          (a replay of a finding from before it cleared);
        - an open finding with an open or acknowledged insight brings its severity, evidence,
          confidence, impact, summary, recommendation and ``last_seen_at`` up to date
          (``insight.updated``); with a dismissed one, the same, quietly: it stays dismissed;
        - a resolved finding resolves the unresolved insight (``insight.resolved``), at its
          ``last_seen_at``;
        - a finding whose ``last_seen_at`` is older than the insight's changes nothing, and one
          that says what the insight already says changes nothing.
        """
        if not observations:
            return []
        # Each subject's observations in the order given, subjects in one order for every replica:
        # two transactions lock the rows they share in the same order and never deadlock.
        ordered = sorted(
            enumerate(observations), key=lambda item: (item[1].finding.kind.value, subject_key(item[1].finding.subject))
        )

        def work(session: Session) -> builtins.list[_Change]:
            now = utcnow()
            return [change for order, seen in ordered if (change := _apply(session, order, seen, now))]

        changes = self._retried(work)
        changes.sort(key=lambda change: change.order)
        events = [Event(change.event, insight_data(change.insight)) for change in changes if change.event]
        if events:
            self.bus.publish_many(events)
        return [change.insight for change in changes]

    def open_counts(self) -> dict[tuple[FindingKind, Severity], int]:
        """Open and acknowledged insights per kind and severity, every pair present (0 for none):
        the ``tars_insights_open{kind,severity}`` gauge, whose series drop to 0 as insights clear."""
        with self.sessions() as session:
            counted = insights.active_counts(session)
        return {(kind, severity): counted.get((kind, severity), 0) for kind in FindingKind for severity in Severity}

    # what the API and operators call

    def list(self, where: InsightFilter, *, limit: int = 100, cursor: str | None = None) -> InsightPage:
        """A page of insights, newest first (by ``first_seen_at``, then id), after ``cursor`` (from
        the page before)."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidField("limit", f"between 1 and {MAX_PAGE}", location="query")
        after = decode_cursor(cursor) if cursor is not None else None
        with self.sessions() as session:
            rows = insights.read_page(session, where, limit=limit, after=after)
        items = rows[:limit]  # the one more read says whether another page follows
        last = items[-1] if len(rows) > limit and items else None
        return InsightPage(items, encode_cursor(Position(last.first_seen_at, last.id)) if last else None)

    def get(self, insight_id: int) -> Insight:
        with self.sessions() as session:
            return insights.insight_of(insights.get_row(session, insight_id))

    def acknowledge(self, insight_id: int, *, by: Principal | None, note: str | None = None) -> Insight:
        """Someone is on it: the insight stays listed as active and keeps being updated."""
        return self._decide(insight_id, InsightState.ACKNOWLEDGED, by, note)

    def dismiss(self, insight_id: int, *, by: Principal | None, note: str | None = None) -> Insight:
        """Not worth attention: kept up to date quietly, not opened again until the condition clears."""
        return self._decide(insight_id, InsightState.DISMISSED, by, note)

    def _retried(self, work: Callable[[Session], T]) -> T:
        """``work`` in a transaction of its own, run again (a few times) if a concurrent writer
        made it fail: each time it reads what the other stored."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with transaction(self.sessions) as session:
                    return work(session)
            except Exception as exc:
                if attempt == ATTEMPTS or not (isinstance(exc, _LostRace) or insights.is_lost_race(exc)):
                    raise
                log.info("an insight transaction lost a race to another writer (%s); again", type(exc).__name__)
        raise AssertionError("unreachable")

    def _decide(self, insight_id: int, state: InsightState, by: Principal | None, note: str | None) -> Insight:
        if note is not None and len(note) > MAX_NOTE_LENGTH:
            raise InvalidField("note", f"at most {MAX_NOTE_LENGTH} characters")
        if note is not None and "\x00" in note:
            raise InvalidField("note", "must not contain NUL characters")
        acknowledging = state is InsightState.ACKNOWLEDGED

        def work(session: Session) -> Insight:
            row = insights.get_row(session, insight_id, for_update=True)
            if row.state == InsightState.RESOLVED.value:
                raise InsightResolved(insight_id, state.value)
            before, now, actor = row.state, utcnow(), by.username if by else audit.SYSTEM
            row.state = state.value
            if acknowledging:
                row.acknowledged_by, row.acknowledged_at = actor, now
            else:
                row.dismissed_by, row.dismissed_at = actor, now
            if note is not None:
                row.note = note
            row.updated_at = now
            audit.record(
                session,
                by,
                AuditAction.INSIGHT_ACKNOWLEDGED if acknowledging else AuditAction.INSIGHT_DISMISSED,
                target=str(insight_id),
                details={
                    "kind": row.kind,
                    "severity": row.severity,
                    "agent_id": row.agent_id,
                    "previous_state": before,
                    "note": note,
                },
            )
            return insights.insight_of(row)

        insight = self._retried(work)
        event = EventType.INSIGHT_ACKNOWLEDGED if acknowledging else EventType.INSIGHT_DISMISSED
        self.bus.publish(Event(event, insight_data(insight)))
        return insight


def _apply(session: Session, order: int, seen: Observation, now: datetime) -> _Change | None:
    finding = seen.finding
    key = subject_key(finding.subject)
    row = insights.unresolved(session, finding.kind, key)
    if finding.state is FindingState.RESOLVED:
        if row is None or seen.last_seen_at < row.last_seen_at:
            return None  # nothing to resolve, or a replay from before the insight's latest evidence
        row.state = InsightState.RESOLVED.value
        row.resolved_at = seen.last_seen_at
        row.resolution = finding.summary
        row.updated_at = now
        session.flush()
        return _Change(order, insights.insight_of(row), EventType.INSIGHT_RESOLVED)
    content = _content(finding, seen)
    if row is None:
        cleared = insights.last_resolved_at(session, finding.kind, key)
        if cleared is not None and seen.last_seen_at <= cleared:
            return None  # a replay of the condition before it cleared
        subject = finding.subject
        opened = insights.insert_unless_taken(
            session,
            {
                **content,
                "kind": finding.kind.value,
                "state": InsightState.OPEN.value,
                "agent_id": subject.agent_id,
                "environment": subject.environment,
                "region": subject.region,
                "run_id": subject.run_id,
                "subject_key": key,
                "first_seen_at": seen.first_seen_at,
                "updated_at": now,
            },
        )
        if opened is not None:
            return _Change(order, insights.insight_of(opened), EventType.INSIGHT_OPENED)
        # A concurrent writer opened it first (and has committed): bring theirs up to date instead.
        row = insights.unresolved(session, finding.kind, key)
        if row is None:
            raise _LostRace
    if seen.last_seen_at < row.last_seen_at:
        return None  # older than what the insight already says
    if all(getattr(row, column) == value for column, value in content.items()):
        return None  # says nothing new: a replay
    for column, value in content.items():
        setattr(row, column, value)
    row.updated_at = now
    session.flush()
    quiet = row.state == InsightState.DISMISSED.value
    return _Change(order, insights.insight_of(row), None if quiet else EventType.INSIGHT_UPDATED)


def _content(finding: Finding, seen: Observation) -> dict[str, Any]:
    """What an open finding says of its condition, as stored: JSON that every database and client
    takes (no NaN or infinity; JSON has none)."""
    recommendation = finding.recommendation
    return {
        "severity": finding.severity.value,
        "evidence": {str(name): _evidence(value) for name, value in finding.evidence.items()},
        "confidence": min(1.0, max(0.0, _finite(finding.confidence) or 0.0)),
        "impact": _finite(finding.impact),
        "summary": finding.summary,
        "recommendation": {
            "action": recommendation.action.value,
            "reason": recommendation.reason,
            "parameters": {str(name): _scalar(value) for name, value in recommendation.parameters.items()},
        },
        "last_seen_at": seen.last_seen_at,
    }


def _finite(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _number(value: object) -> float | int | None:
    if isinstance(value, numbers.Integral):  # bool among them
        return int(value)
    if isinstance(value, numbers.Real):
        return _finite(float(value))
    return None


def _scalar(value: object) -> float | int | str | bool | None:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Real):
        return _number(value)
    return str(value)


def _evidence(value: object) -> float | int | str | bool | dict[str, float | int | None] | None:
    """One evidence value as `Evidence` allows: a scalar, or a summary of numbers (numpy's included)."""
    if isinstance(value, Mapping):
        return {str(name): _number(item) for name, item in value.items()}
    return _scalar(value)
