"""Evaluations submitted by clients."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from tars.bus.base import EventBus
from tars.domain.agents import ENVIRONMENTS
from tars.domain.audit import AuditAction
from tars.domain.errors import IdempotencyKeyReused, InvalidField, InvalidFields
from tars.domain.events import Event, EventType
from tars.domain.users import Principal
from tars.metrics.counting import count_evaluations
from tars.services import audit
from tars.storage import agents, evaluations
from tars.storage import idempotency as idempotency_keys
from tars.storage.database import SessionFactory, transaction
from tars.storage.evaluations import NewEvaluation, StoredEvaluation
from tars.storage.types import utcnow


@dataclass(frozen=True)
class IdempotencyKey:
    """A client's Idempotency-Key, whose principal and operation it belongs to, and what was asked."""

    key: str
    principal: str
    scope: str
    request_hash: str


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: dict[str, Any]
    # The request was made before with this key: nothing was stored now, this is the first answer.
    replayed: bool


# How long a key is remembered; a retry comes within minutes, not days.
IDEMPOTENCY_KEEP = timedelta(hours=24)
MAX_BATCH = 1000
# A batch is announced as events of up to this many evaluations of one agent: one event per item
# cost more than the storing (numbering, announcing and relaying each), while one event per batch
# would let a channel's replay window of 1,000 events hold a million evaluations.
ITEMS_PER_EVENT = 100


def submit_evaluation(sessions: SessionFactory, bus: EventBus, submission: NewEvaluation) -> StoredEvaluation:
    with transaction(sessions) as session:
        rows = _store(session, [submission], batch=False)
    _announce(bus, rows)
    return rows[0]


def submit_evaluations(
    sessions: SessionFactory,
    bus: EventBus,
    submissions: list[NewEvaluation],
    *,
    render: Callable[[list[StoredEvaluation]], dict[str, Any]],
    batch: bool,
    idempotency: IdempotencyKey | None = None,
    status_code: int = 201,
) -> Answer:
    """Store all of ``submissions`` or none (every bad item named), once per idempotency key.

    ``render`` gives the answer's body from the stored rows; it is kept with the key, so a retry
    gets exactly the first answer.
    """
    if len(submissions) > MAX_BATCH:
        raise InvalidField("items", f"at most {MAX_BATCH} evaluations per batch")
    with transaction(sessions) as session:
        if idempotency is not None:
            earlier = idempotency_keys.claim(
                session, idempotency.principal, idempotency.scope, idempotency.key, idempotency.request_hash
            )
            if earlier is not None:
                if earlier.request_hash != idempotency.request_hash or earlier.response is None:
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was used for a different request; use a new key for a new request"
                    )
                return Answer(earlier.status_code or status_code, dict(earlier.response), replayed=True)
            if secrets.randbelow(100) == 0:  # now and then, forget keys nobody will retry any more
                idempotency_keys.forget_older_than(session, utcnow() - IDEMPOTENCY_KEEP)
        rows = _store(session, submissions, batch=batch)
        body = render(rows)
        if idempotency is not None:
            idempotency_keys.record_answer(
                session, idempotency.principal, idempotency.scope, idempotency.key, status_code, body
            )
    _announce(bus, rows, batch=batch)
    return Answer(status_code, body, replayed=False)


def _store(session: Session, submissions: list[NewEvaluation], *, batch: bool) -> list[StoredEvaluation]:
    known = agents.existing_agent_ids(session, {item.agent_id for item in submissions})
    problems = []
    for index, item in enumerate(submissions):
        where = f"items.{index}." if batch else ""
        if item.environment not in ENVIRONMENTS:
            problems.append(InvalidField(f"{where}environment", f"unknown environment {item.environment!r}"))
        if item.agent_id not in known:
            problems.append(InvalidField(f"{where}agent_id", f"unknown agent {item.agent_id!r}"))
    if len(problems) == 1 and not batch:
        raise problems[0]
    if problems:
        raise InvalidFields(problems)
    return evaluations.insert_evaluations(session, submissions)


def _announce(bus: EventBus, rows: list[StoredEvaluation], *, batch: bool = False) -> None:
    count_evaluations(rows)
    data = evaluations_event_data(rows)
    if not batch:
        bus.publish_many([Event(EventType.EVALUATION_CREATED, item) for item in data])
        return
    by_agent: dict[str, list[dict[str, Any]]] = {}
    for item in data:
        by_agent.setdefault(item["agent_id"], []).append(item)
    bus.publish_many(
        [
            Event(EventType.EVALUATIONS_CREATED, {"agent_id": agent, "items": items[start : start + ITEMS_PER_EVENT]})
            for agent, items in by_agent.items()
            for start in range(0, len(items), ITEMS_PER_EVENT)
        ]
    )


def delete_evaluation(sessions: SessionFactory, bus: EventBus, evaluation_id: int, *, by: Principal | None) -> None:
    with transaction(sessions) as session:
        row = evaluations.get_evaluation(session, evaluation_id)
        [data] = evaluations_event_data([evaluations.stored_evaluation(row)])
        evaluations.delete_evaluation(session, row)
        audit.record(
            session,
            by,
            AuditAction.EVALUATION_DELETED,
            target=str(evaluation_id),
            details={key: data[key] for key in ("agent_id", "environment", "region", "reward", "created_at")},
        )
    bus.publish(Event(EventType.EVALUATION_DELETED, data))


def evaluations_event_data(rows: Iterable[StoredEvaluation]) -> list[dict[str, Any]]:
    """What events say of each evaluation; a batch shares one created_at, formatted once."""
    formatted: dict[datetime, str] = {}
    data = []
    for row in rows:
        item = row._asdict()
        moment = row.created_at
        item["created_at"] = formatted.get(moment) or formatted.setdefault(moment, moment.isoformat())
        data.append(item)
    return data
