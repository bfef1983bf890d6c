"""Idempotency keys, claimed in the same transaction as the work they guard."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tars.storage.tables import IdempotencyKeyRow
from tars.storage.types import utcnow


def claim(session: Session, principal: str, scope: str, key: str, request_hash: str) -> IdempotencyKeyRow | None:
    """Claim ``key`` for this request: None when claimed now (go on and do the work), else the row
    of the earlier request. A concurrent request with the same key waits on the unique index until
    the first one's transaction ends, then sees its row."""
    values = {
        "principal": principal,
        "scope": scope,
        "key": key,
        "request_hash": request_hash,
        "created_at": utcnow(),
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(IdempotencyKeyRow).values(**values).on_conflict_do_nothing().returning(IdempotencyKeyRow.id)
    if session.execute(statement).scalar() is not None:
        return None
    return session.scalars(
        select(IdempotencyKeyRow).where(
            IdempotencyKeyRow.principal == principal, IdempotencyKeyRow.scope == scope, IdempotencyKeyRow.key == key
        )
    ).one()


def record_answer(
    session: Session, principal: str, scope: str, key: str, status_code: int, response: dict[str, Any]
) -> None:
    row = session.scalars(
        select(IdempotencyKeyRow).where(
            IdempotencyKeyRow.principal == principal, IdempotencyKeyRow.scope == scope, IdempotencyKeyRow.key == key
        )
    ).one()
    row.status_code = status_code
    row.response = response


def forget_older_than(session: Session, moment: datetime) -> None:
    session.execute(delete(IdempotencyKeyRow).where(IdempotencyKeyRow.created_at < moment))


def forget(session: Session, principal: str, scope: str) -> None:
    session.execute(
        delete(IdempotencyKeyRow).where(IdempotencyKeyRow.principal == principal, IdempotencyKeyRow.scope == scope)
    )
