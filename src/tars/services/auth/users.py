"""Accounts: creating users, listing them, changing their role or standing."""

from __future__ import annotations

from sqlalchemy.orm import Session

from tars.domain.audit import AuditAction
from tars.domain.errors import Conflict, InvalidField, NotFound
from tars.domain.users import Principal, Role, User
from tars.services import audit
from tars.services.auth.invalidations import Invalidations, user_topic
from tars.services.auth.passwords import hash_password
from tars.storage import users
from tars.storage.database import SessionFactory, transaction

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


def valid_username(username: str) -> bool:
    return 0 < len(username) <= 64 and username.replace("-", "").replace("_", "").replace(".", "").isalnum()


class Users:
    def __init__(self, sessions: SessionFactory, invalidations: Invalidations) -> None:
        self._sessions = sessions
        self._invalidations = invalidations

    def create(self, username: str, password: str, role: Role, *, by: Principal | None = None) -> User:
        password_hash = _password_hash(username, password)  # slow on purpose: before the transaction
        with transaction(self._sessions) as session:
            return _add(session, username, password_hash, role, by)

    def list(self) -> list[User]:
        with self._sessions() as session:
            return users.list_users(session)

    def update(
        self, by: Principal | None, user_id: int, *, role: Role | None = None, active: bool | None = None
    ) -> User:
        """Change a user's role or standing; every replica forgets the user's cached credentials."""
        if role is None and active is None:
            raise InvalidField("role", "give role, active or both")
        with transaction(self._sessions) as session:
            user = users.get_user(session, user_id)
            if user is None:
                raise NotFound("user", user_id)
            if (
                by is not None
                and by.user_id == user_id
                and (active is False or (role is not None and role != user.role))
            ):
                raise Conflict("an admin cannot demote or deactivate themself; ask another admin")
            if role is not None and role != user.role:
                audit.record(
                    session,
                    by,
                    AuditAction.ROLE_CHANGED,
                    target=user.username,
                    details={"from": user.role, "to": role.value},
                )
                user.role = role.value
            if active is not None and active != user.active:
                action = AuditAction.USER_REACTIVATED if active else AuditAction.USER_DEACTIVATED
                audit.record(session, by, action, target=user.username)
                user.active = active
            changed = users.user_record(user)
        self._invalidations.announce(user_topic(user_id))
        return changed


def add_user(session: Session, username: str, password: str, role: Role, *, by: Principal | None = None) -> User:
    """`Users.create` inside the caller's transaction (seeding many users at once)."""
    return _add(session, username, _password_hash(username, password), role, by)


def _password_hash(username: str, password: str) -> str:
    if not valid_username(username):
        raise InvalidField("username", "use 1-64 letters, digits, '.', '-' or '_'")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidField("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidField("password", f"at most {MAX_PASSWORD_LENGTH} characters")
    return hash_password(password)


def _add(session: Session, username: str, password_hash: str, role: Role, by: Principal | None) -> User:
    row = users.create_user(session, username, password_hash, role)
    audit.record(session, by, AuditAction.USER_CREATED, target=username, details={"role": role.value})
    return users.user_record(row)
