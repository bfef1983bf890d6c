"""Login sessions and the refresh tokens that rotate within them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from tars.storage.tables import AuthSessionRow, RefreshTokenRow


def add_session(session: Session, row: AuthSessionRow) -> AuthSessionRow:
    session.add(row)
    session.flush()
    return row


def get_session(session: Session, session_id: str) -> AuthSessionRow | None:
    return session.get(AuthSessionRow, session_id)


def add_refresh_token(session: Session, row: RefreshTokenRow) -> RefreshTokenRow:
    session.add(row)
    session.flush()
    return row


def refresh_token_for_update(session: Session, token_id: str) -> RefreshTokenRow | None:
    """The token, locked until the transaction ends: two refreshes racing with one token must not
    both win (SQLite serialises writers anyway)."""
    return session.scalars(
        select(RefreshTokenRow).where(RefreshTokenRow.id == token_id).with_for_update()
    ).one_or_none()


def revoke_session(session: Session, session_id: str, reason: str, at: datetime) -> bool:
    """Revoke a live session; False when it was revoked already."""
    result = session.execute(
        update(AuthSessionRow)
        .where(AuthSessionRow.id == session_id, AuthSessionRow.revoked_at.is_(None))
        .values(revoked_at=at, revoked_reason=reason)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def live_session_ids(session: Session, user_id: int, now: datetime) -> list[str]:
    return list(
        session.scalars(
            select(AuthSessionRow.id).where(
                AuthSessionRow.user_id == user_id, AuthSessionRow.revoked_at.is_(None), AuthSessionRow.expires_at > now
            )
        )
    )


def prune(session: Session, user_id: int, now: datetime) -> None:
    """Forget a user's ended sessions (their tokens go with them) and expired refresh tokens."""
    ended = select(AuthSessionRow.id).where(
        AuthSessionRow.user_id == user_id, or_(AuthSessionRow.expires_at <= now, AuthSessionRow.revoked_at.is_not(None))
    )
    session.execute(delete(RefreshTokenRow).where(RefreshTokenRow.session_id.in_(ended)))
    session.execute(delete(AuthSessionRow).where(AuthSessionRow.id.in_(ended)))
    live = select(AuthSessionRow.id).where(AuthSessionRow.user_id == user_id)
    session.execute(
        delete(RefreshTokenRow).where(RefreshTokenRow.session_id.in_(live), RefreshTokenRow.expires_at <= now)
    )
