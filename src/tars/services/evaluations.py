"""Evaluations: submitting one or a batch (once per Idempotency-Key), deleting one, listing a page,
and summaries and series over a window. Each use case opens its own unit of work and answers with
domain records, or the JSON the service made of them."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

import orjson
from anyio import to_thread
from sqlalchemy.orm import Session

from tars.bus.base import EventBus
from tars.domain.agents import ENVIRONMENTS
from tars.domain.audit import AuditAction
from tars.domain.errors import IdempotencyKeyReused, InvalidField, InvalidFields
from tars.domain.evaluations import (
    EVALUATION_FIELDS,
    Evaluation,
    EvaluationFields,
    EvaluationFilter,
    EvaluationScope,
    EvaluationSeries,
    EvaluationSummary,
    Interval,
    NewEvaluation,
    Position,
    decode_cursor,
    encode_cursor,
)
from tars.domain.events import Event, EventType
from tars.domain.users import Principal
from tars.metrics.counting import count_evaluations
from tars.services import audit, summaries
from tars.services.grouping import Grouped
from tars.storage import agents, evaluations
from tars.storage import idempotency as idempotency_keys
from tars.storage.database import SessionFactory, transaction
from tars.storage.types import utcnow

# How long a key is remembered; a retry comes within minutes, not days.
IDEMPOTENCY_KEEP = timedelta(hours=24)
MAX_BATCH = 1000
# A batch is announced as events of up to this many evaluations of one agent: one event per item
# cost more than the storing (numbering, announcing and relaying each), while one event per batch
# would let a channel's replay window of 1,000 events hold a million evaluations.
ROWS_PER_EVENT = 100
# A batch's events give each evaluation as a row of these (the agent once, in the event): a third
# of the bytes of an object per evaluation, which Redis stores twice and announces once.
BATCH_EVENT_COLUMNS = [name for name in EVALUATION_FIELDS if name != "agent_id"]
# What a submission's answer is kept under with its key (the column holds the answer's status too).
CREATED = 201
JSON_OPTIONS = orjson.OPT_UTC_Z
# Transactions of single submissions in flight at once (see Grouped): enough that one's commit and
# publish overlap another's work, few enough that each still carries many.
SINGLE_LANES = 3


class EvaluationStore(Protocol):
    """Evaluations read and stored on the event loop: one implementation per database, chosen by wiring."""

    async def start(self) -> None:
        """Open what reading needs on the running event loop (a pool, say)."""

    async def close(self) -> None:
        """Close what `start` opened on the running event loop."""

    async def page(self, where: EvaluationFilter, *, limit: int, after: Position | None) -> list[EvaluationFields]:
        """Up to ``limit`` + 1 evaluations after ``after``, newest first, each as its fields by name."""
        ...

    async def insert(self, new: Sequence[NewEvaluation], now: datetime, *, all_or_nothing: bool) -> list[Evaluation]:
        """Store those of ``new`` whose agent is known (``all_or_nothing``: none unless every agent is)
        with their hours' rollups, at once; the stored ones in the order given, created ``now``
        unless they say when."""
        ...

    async def known_agents(self, agent_ids: set[str]) -> set[str]:
        """Which of ``agent_ids`` are agents."""
        ...


@dataclass(frozen=True)
class Receipt:
    """What a submission answers: JSON made from the stored records, or the first answer to its key."""

    body: bytes
    # The request was made before with this key: nothing was stored now, this is the first answer.
    replayed: bool


@dataclass(frozen=True)
class _Key:
    key: str
    principal: str
    scope: str
    request_hash: str


class EvaluationService:
    def __init__(self, sessions: SessionFactory, bus: EventBus, store: EvaluationStore) -> None:
        self.sessions = sessions
        self.bus = bus
        self.evaluation_store = store
        self._singles = Grouped(self._store_singles, lanes=SINGLE_LANES)

    async def start(self) -> None:
        await self.evaluation_store.start()

    async def close(self) -> None:
        await self.evaluation_store.close()
        await self.bus.close_on_loop()

    # writing

    def submit(
        self, submission: NewEvaluation, *, by: Principal | None = None, idempotency_key: str | None = None
    ) -> Receipt:
        """Store one evaluation; its answer is the stored evaluation."""
        key = _key(idempotency_key, by, "evaluations", [submission])
        return self._submit([submission], key, batch=False)

    async def submit_on_loop(
        self, submission: NewEvaluation, *, by: Principal | None = None, idempotency_key: str | None = None
    ) -> Receipt:
        """`submit` for the event loop. Without a key, stored with the single submissions that arrive
        meanwhile, in one statement (each answered for itself: see `Grouped`)."""
        if idempotency_key is not None:
            return await to_thread.run_sync(partial(self.submit, submission, by=by, idempotency_key=idempotency_key))
        if submission.environment not in ENVIRONMENTS:
            raise InvalidField("environment", f"unknown environment {submission.environment!r}")
        stored = await self._singles(submission)
        return Receipt(orjson.dumps(stored._asdict(), option=JSON_OPTIONS), replayed=False)

    async def _store_singles(self, submissions: list[NewEvaluation]) -> list[Evaluation | Exception]:
        """Single submissions stored and announced together, each as `submit` would."""
        try:
            stored = await self.evaluation_store.insert(submissions, utcnow(), all_or_nothing=False)
        except Exception:
            if len(submissions) == 1:
                raise
            # A value in the group the database refused: each alone, so only its sender hears of it.
            return [await _outcome(self._store_singles([item])) for item in submissions]
        known = {row.agent_id for row in stored}  # an agent is known for all its items or for none
        rows = iter(stored)
        outcomes: list[Evaluation | Exception] = [
            next(rows) if item.agent_id in known else InvalidField("agent_id", f"unknown agent {item.agent_id!r}")
            for item in submissions
        ]
        count_evaluations(stored)
        await self.bus.publish_many_on_loop(_events(stored, batch=False))
        return outcomes

    async def submit_batch_on_loop(
        self, submissions: list[NewEvaluation], *, by: Principal | None = None, idempotency_key: str | None = None
    ) -> Receipt:
        """`submit_batch` for the event loop: without a key, one statement through the store."""
        if len(submissions) > MAX_BATCH:
            raise InvalidField("items", f"at most {MAX_BATCH} evaluations per batch")
        if idempotency_key is not None:
            return await to_thread.run_sync(
                partial(self.submit_batch, submissions, by=by, idempotency_key=idempotency_key)
            )
        stored: list[Evaluation] = []
        if all(item.environment in ENVIRONMENTS for item in submissions):
            stored = await self.evaluation_store.insert(submissions, utcnow(), all_or_nothing=True)
        if len(stored) < len(submissions):
            known = await self.evaluation_store.known_agents({item.agent_id for item in submissions})
            raise InvalidFields(_problems(submissions, known, batch=True))
        count_evaluations(stored)
        await self.bus.publish_many_on_loop(_events(stored, batch=True))
        body = orjson.dumps({"count": len(stored), "ids": [row.id for row in stored]}, option=JSON_OPTIONS)
        return Receipt(body, replayed=False)

    def submit_batch(
        self, submissions: list[NewEvaluation], *, by: Principal | None = None, idempotency_key: str | None = None
    ) -> Receipt:
        """Store all of ``submissions`` or none (every bad item named); the answer is their count and ids."""
        if len(submissions) > MAX_BATCH:
            raise InvalidField("items", f"at most {MAX_BATCH} evaluations per batch")
        key = _key(idempotency_key, by, "evaluations.batch", submissions)
        return self._submit(submissions, key, batch=True)

    def store(self, submission: NewEvaluation) -> Evaluation:
        """Store one evaluation and announce it; the stored record."""
        with transaction(self.sessions) as session:
            rows = _store(session, [submission], batch=False)
        _announce(self.bus, rows)
        return rows[0]

    def _submit(self, submissions: list[NewEvaluation], key: _Key | None, *, batch: bool) -> Receipt:
        """Once per idempotency key: a retry gets exactly the first answer, kept with the key."""
        with transaction(self.sessions) as session:
            if key is not None:
                earlier = idempotency_keys.claim(session, key.principal, key.scope, key.key, key.request_hash)
                if earlier is not None:
                    if earlier.request_hash != key.request_hash or earlier.response is None:
                        raise IdempotencyKeyReused(
                            "this Idempotency-Key was used for a different request; use a new key for a new request"
                        )
                    return Receipt(orjson.dumps(earlier.response), replayed=True)
                if secrets.randbelow(100) == 0:  # now and then, forget keys nobody will retry any more
                    idempotency_keys.forget_older_than(session, utcnow() - IDEMPOTENCY_KEEP)
            rows = _store(session, submissions, batch=batch)
            answer: dict[str, Any] = (
                {"count": len(rows), "ids": [row.id for row in rows]} if batch else rows[0]._asdict()
            )
            body = orjson.dumps(answer, option=JSON_OPTIONS)
            if key is not None:
                idempotency_keys.record_answer(session, key.principal, key.scope, key.key, CREATED, orjson.loads(body))
        _announce(self.bus, rows, batch=batch)
        return Receipt(body, replayed=False)

    def delete(self, evaluation_id: int, *, by: Principal | None) -> Evaluation:
        """Delete one evaluation (a mistaken submission, say); the audit log keeps what it was."""
        with transaction(self.sessions) as session:
            deleted = evaluations.delete_evaluation(session, evaluation_id)
            [data] = evaluations_event_data([deleted])
            audit.record(
                session,
                by,
                AuditAction.EVALUATION_DELETED,
                target=str(evaluation_id),
                details={key: data[key] for key in ("agent_id", "environment", "region", "reward", "created_at")},
            )
        self.bus.publish(Event(EventType.EVALUATION_DELETED, data))
        return deleted

    # reading

    async def page_json(self, where: EvaluationFilter, *, limit: int, cursor: str | None = None) -> bytes:
        """A page of evaluations, newest first, after ``cursor`` (from the page before), as the API
        answers it: JSON made straight from the fields read, since building a record and then a dict
        of it for every row cost the hottest read a tenth of its throughput."""
        rows, next_cursor = await self._read(where, limit, cursor)
        return orjson.dumps({"items": rows, "next_cursor": next_cursor}, option=JSON_OPTIONS)

    async def _read(
        self, where: EvaluationFilter, limit: int, cursor: str | None
    ) -> tuple[list[EvaluationFields], str | None]:
        after = decode_cursor(cursor) if cursor is not None else None
        rows = await self.evaluation_store.page(where, limit=limit, after=after)
        items = rows[:limit]  # the one more read says whether another page follows
        if len(rows) > limit and items:
            return items, encode_cursor(Position(items[-1]["created_at"], items[-1]["id"]))
        return items, None

    def summary(
        self, scope: EvaluationScope, since: datetime, until: datetime, group_by: list[str]
    ) -> EvaluationSummary:
        with self.sessions() as session:
            return summaries.summarize(session, scope, since, until, group_by)

    def series(self, scope: EvaluationScope, since: datetime, until: datetime, interval: Interval) -> EvaluationSeries:
        with self.sessions() as session:
            return summaries.series(session, scope, since, until, interval)


def _key(key: str | None, by: Principal | None, scope: str, submissions: list[NewEvaluation]) -> _Key | None:
    if key is None:
        return None
    if by is None:
        raise ValueError("an Idempotency-Key belongs to a principal")
    # What was asked, as stored: the same submissions hash the same, whatever the JSON's spacing.
    request_hash = hashlib.sha256(repr(submissions).encode()).hexdigest()
    return _Key(key=key, principal=f"user:{by.user_id}", scope=scope, request_hash=request_hash)


async def _outcome(results: Awaitable[list[Evaluation | Exception]]) -> Evaluation | Exception:
    try:
        [result] = await results
    except Exception as exc:
        return exc
    return result


def _problems(submissions: list[NewEvaluation], known: set[str], *, batch: bool) -> list[InvalidField]:
    problems = []
    for index, item in enumerate(submissions):
        where = f"items.{index}." if batch else ""
        if item.environment not in ENVIRONMENTS:
            problems.append(InvalidField(f"{where}environment", f"unknown environment {item.environment!r}"))
        if item.agent_id not in known:
            problems.append(InvalidField(f"{where}agent_id", f"unknown agent {item.agent_id!r}"))
    return problems


def _store(session: Session, submissions: list[NewEvaluation], *, batch: bool) -> list[Evaluation]:
    known = agents.existing_agent_ids(session, {item.agent_id for item in submissions})
    problems = _problems(submissions, known, batch=batch)
    if len(problems) == 1 and not batch:
        raise problems[0]
    if problems:
        raise InvalidFields(problems)
    return evaluations.insert_evaluations(session, submissions)


def _announce(bus: EventBus, rows: list[Evaluation], *, batch: bool = False) -> None:
    count_evaluations(rows)
    bus.publish_many(_events(rows, batch=batch))


def _events(rows: list[Evaluation], *, batch: bool) -> list[Event]:
    """What stored evaluations are announced as: an event each, or a batch's as rows (see `ROWS_PER_EVENT`)."""
    if not batch:
        return [Event(EventType.EVALUATION_CREATED, item) for item in evaluations_event_data(rows)]
    by_agent: dict[str, list[list[Any]]] = {}
    formatted: dict[datetime, str] = {}
    for id_, agent, run, environment, region, reward, length, duration, status, created in rows:
        moment = formatted.get(created) or formatted.setdefault(created, created.isoformat())
        by_agent.setdefault(agent, []).append([id_, run, environment, region, reward, length, duration, status, moment])
    return [
        Event(
            EventType.EVALUATIONS_CREATED,
            {"agent_id": agent, "columns": BATCH_EVENT_COLUMNS, "rows": items[start : start + ROWS_PER_EVENT]},
        )
        for agent, items in by_agent.items()
        for start in range(0, len(items), ROWS_PER_EVENT)
    ]


def evaluations_event_data(rows: Iterable[Evaluation]) -> list[dict[str, Any]]:
    """What events say of each evaluation; a batch shares one created_at, formatted once."""
    formatted: dict[datetime, str] = {}
    data = []
    for row in rows:
        item = row._asdict()
        moment = row.created_at
        item["created_at"] = formatted.get(moment) or formatted.setdefault(moment, moment.isoformat())
        data.append(item)
    return data
