from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from tars.domain.errors import Conflict
from tars.domain.users import Role, User
from tars.storage.tables import UserRow


def create_user(session: Session, username: str, password_hash: str, role: Role) -> UserRow:
    if get_user_by_username(session, username) is not None:
        raise Conflict(f"user {username!r} already exists")
    row = UserRow(username=username, password_hash=password_hash, role=role.value, active=True)
    session.add(row)
    session.flush()
    return row


def get_user_by_username(session: Session, username: str) -> UserRow | None:
    return session.scalars(select(UserRow).where(UserRow.username == username)).one_or_none()


def get_user(session: Session, user_id: int) -> UserRow | None:
    return session.get(UserRow, user_id)


def list_users(session: Session) -> list[User]:
    return [user_record(row) for row in session.scalars(select(UserRow).order_by(UserRow.id))]


def user_record(row: UserRow) -> User:
    return User(row.id, row.username, Role(row.role), row.active, row.created_at)
