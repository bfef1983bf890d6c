from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tars.domain.errors import NotFound
from tars.domain.users import ApiKey, Role
from tars.storage.tables import ApiKeyRow, UserRow


def add_key(session: Session, row: ApiKeyRow) -> ApiKeyRow:
    session.add(row)
    session.flush()
    return row


def get_key(session: Session, key_id: int) -> ApiKeyRow:
    row = session.get(ApiKeyRow, key_id)
    if row is None:
        raise NotFound("API key", key_id)
    return row


def key_with_owner(session: Session, prefix: str) -> tuple[ApiKeyRow, UserRow] | None:
    """The key with this public prefix and the user it acts for: the one query a cold key costs."""
    found = session.execute(
        select(ApiKeyRow, UserRow).join(UserRow, UserRow.id == ApiKeyRow.user_id).where(ApiKeyRow.key_prefix == prefix)
    ).one_or_none()
    return None if found is None else (found[0], found[1])


def list_keys(session: Session, *, username: str | None = None, include_revoked: bool = False) -> list[ApiKey]:
    query = select(ApiKeyRow).order_by(ApiKeyRow.id)
    if username is not None:
        query = query.join(UserRow, UserRow.id == ApiKeyRow.user_id).where(UserRow.username == username)
    if not include_revoked:
        query = query.where(ApiKeyRow.active)
    return [key_record(row) for row in session.scalars(query)]


def key_record(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        prefix=row.key_prefix,
        user_id=row.user_id,
        name=row.name,
        role=Role(row.role),
        active=row.active,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def record_last_use(session: Session, uses: dict[int, datetime]) -> None:
    """Keep the latest of what is stored and what was seen (other replicas write theirs too)."""
    for key_id, moment in uses.items():
        session.execute(
            update(ApiKeyRow)
            .where(ApiKeyRow.id == key_id)
            .where((ApiKeyRow.last_used_at.is_(None)) | (ApiKeyRow.last_used_at < moment))
            .values(last_used_at=moment)
        )
