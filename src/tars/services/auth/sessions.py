"""Login sessions: an access token and a refresh token that rotates on every use.

Each refresh token may be exchanged once. A second use means it was copied: the whole session
(every token that rotated from the same login, and the access tokens issued under it) is revoked,
so the thief and the owner both have to log in again, and the owner learns of it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from tars.domain.audit import AuditAction, Outcome
from tars.domain.errors import InvalidField
from tars.domain.users import Credential, Principal, Role
from tars.services import audit
from tars.services.auth.errors import AuthenticationFailed
from tars.services.auth.invalidations import Invalidations, session_topic
from tars.services.auth.passwords import verify_password
from tars.services.auth.tokens import Subject, TokenService
from tars.storage import auth_sessions, users
from tars.storage.database import SessionFactory, transaction
from tars.storage.tables import AuthSessionRow, RefreshTokenRow, UserRow
from tars.storage.types import utcnow

REFRESH_MARK = "rt"


@dataclass(frozen=True)
class SessionLifetimes:
    refresh_seconds: int
    # However often it is refreshed, a login ends after this long.
    session_seconds: int


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    session_id: str


class RefreshTokenReused(AuthenticationFailed):
    """A rotated refresh token came back: its session is revoked, everywhere."""

    def __init__(self) -> None:
        super().__init__("this refresh token was used before; the session is ended for safety, log in again")


class LoginSessions:
    """Logging in with a password, refreshing, logging out: each one transaction, announced to
    every replica when it ends a session."""

    def __init__(
        self, sessions: SessionFactory, tokens: TokenService, lifetimes: SessionLifetimes, invalidations: Invalidations
    ) -> None:
        self._sessions = sessions
        self._tokens = tokens
        self.lifetimes = lifetimes
        self._invalidations = invalidations

    def log_in(self, username: str, password: str, address: str | None) -> TokenPair:
        """A new login session; AuthenticationFailed (audited) for a wrong password, an unknown or a
        deactivated user, with one message for every cause."""
        with self._sessions() as session:
            user = _user_named(session, username)
        # Outside any transaction: checking a password is slow on purpose. Checked (against a dummy
        # hash) even for a user that does not exist, so the time taken tells nothing either.
        verified = verify_password(user.password_hash if user is not None else None, password)
        if user is None or not verified or not user.active:
            audit.record_alone(
                self._sessions,
                AuditAction.LOGIN,
                outcome=Outcome.FAILURE,
                target=username[:64],
                actor=username[:64],
                address=address,
            )
            # One message for every cause, so a login never tells which usernames exist.
            raise AuthenticationFailed("incorrect username or password")
        with transaction(self._sessions) as session:
            return start(session, self._tokens, self.lifetimes, user, address)

    def refresh(self, refresh_token: str, address: str | None) -> TokenPair:
        """Exchange ``refresh_token`` for a new pair. Each refresh token works once: presenting one
        again ends its whole session (RefreshTokenReused)."""
        with transaction(self._sessions) as session:
            refreshed = refresh(session, self._tokens, self.lifetimes, refresh_token, address)
        if refreshed.revoked_session is not None:
            self._invalidations.announce(session_topic(refreshed.revoked_session))
            raise RefreshTokenReused
        assert refreshed.pair is not None
        return refreshed.pair

    def log_out(self, by: Principal, refresh_token: str | None) -> None:
        """End the session of ``refresh_token``, or else the caller's own: its refresh tokens and
        its access tokens stop working on every replica."""
        with transaction(self._sessions) as session:
            session_id = by.credential_id if by.credential is Credential.TOKEN else None
            if refresh_token is not None:
                session_id = session_of_refresh_token(session, refresh_token)
                if session_id is None:
                    raise AuthenticationFailed("invalid refresh token")
            if session_id is None:
                raise InvalidField("refresh_token", "no session to end: API keys are revoked, not logged out")
            end(session, by, session_id)
        self._invalidations.announce(session_topic(session_id))


def _user_named(session: Session, username: str) -> UserRow | None:
    user = users.get_user_by_username(session, username)
    if user is not None:
        session.expunge(user)  # read after this session closes
    return user


@dataclass(frozen=True)
class Refreshed:
    pair: TokenPair | None
    # Set when a rotated token came back: the session it belonged to, now revoked.
    revoked_session: str | None = None


def start(
    session: Session, tokens: TokenService, lifetimes: SessionLifetimes, user: Subject, address: str | None
) -> TokenPair:
    """A new login session for ``user``, whose password was just checked; audited as a login."""
    now = utcnow()
    auth_sessions.prune(session, user.id, now)  # so a user's sessions and tokens do not pile up
    login = auth_sessions.add_session(
        session,
        AuthSessionRow(
            id=str(uuid.uuid4()),
            user_id=user.id,
            created_at=now,
            expires_at=now + timedelta(seconds=lifetimes.session_seconds),
            address=address,
        ),
    )
    principal = Principal(user.id, user.username, Role(user.role), Credential.PASSWORD, login.id, address)
    audit.record(session, principal, AuditAction.LOGIN, target=user.username)
    return _pair(session, tokens, lifetimes, user, login, now)


def refresh(
    session: Session, tokens: TokenService, lifetimes: SessionLifetimes, refresh_token: str, address: str | None
) -> Refreshed:
    """Exchange ``refresh_token`` for a new pair. Raises AuthenticationFailed for a token that is
    unknown, expired, or of an ended session; returns ``revoked_session`` for a reused one (the
    caller commits the revocation, then refuses)."""
    row = _genuine_token(session, refresh_token)
    if row is None:
        raise AuthenticationFailed("invalid refresh token")
    login = auth_sessions.get_session(session, row.session_id)
    now = utcnow()
    if login is None or login.revoked_at is not None or login.expires_at <= now:
        raise AuthenticationFailed("this session has ended; log in again")
    user = users.get_user(session, login.user_id)
    if user is None or not user.active:
        raise AuthenticationFailed("this session has ended; log in again")
    if row.used_at is not None:
        auth_sessions.revoke_session(session, login.id, "refresh token reused", now)
        principal = Principal(user.id, user.username, Role(user.role), Credential.TOKEN, login.id, address)
        audit.record(
            session,
            principal,
            AuditAction.REFRESH_REUSED,
            target=user.username,
            outcome=Outcome.FAILURE,
            details={"session": login.id, "first_used_at": row.used_at.isoformat()},
        )
        return Refreshed(None, revoked_session=login.id)
    if row.expires_at <= now:
        raise AuthenticationFailed("the refresh token has expired; log in again")
    row.used_at = now
    return Refreshed(_pair(session, tokens, lifetimes, user, login, now))


def end(session: Session, by: Principal, session_id: str) -> bool:
    """Log out: revoke the session (its refresh tokens and its access tokens)."""
    ended = auth_sessions.revoke_session(session, session_id, "logout", utcnow())
    if ended:
        audit.record(session, by, AuditAction.LOGOUT, target=by.username, details={"session": session_id})
    return ended


def session_of_refresh_token(session: Session, refresh_token: str) -> str | None:
    """The session a refresh token belongs to, if the token is genuine."""
    row = _genuine_token(session, refresh_token)
    return None if row is None else row.session_id


def session_is_live(session: Session, session_id: str, now: datetime) -> bool:
    login = auth_sessions.get_session(session, session_id)
    return login is not None and login.revoked_at is None and login.expires_at > now


def _pair(
    session: Session,
    tokens: TokenService,
    lifetimes: SessionLifetimes,
    user: Subject,
    login: AuthSessionRow,
    now: datetime,
) -> TokenPair:
    expires_at = min(now + timedelta(seconds=lifetimes.refresh_seconds), login.expires_at)
    token_id, secret = uuid.uuid4().hex, secrets.token_urlsafe(32)
    auth_sessions.add_refresh_token(
        session,
        RefreshTokenRow(
            id=token_id, session_id=login.id, token_hash=_hash(secret), created_at=now, expires_at=expires_at
        ),
    )
    access = tokens.issue(user, session_id=login.id)
    return TokenPair(
        access_token=access.access_token,
        expires_in=access.expires_in,
        refresh_token=f"{REFRESH_MARK}.{token_id}.{secret}",
        refresh_expires_in=max(0, int((expires_at - now).total_seconds())),
        session_id=login.id,
    )


def _genuine_token(session: Session, refresh_token: str) -> RefreshTokenRow | None:
    """The stored row of a well-formed token whose secret matches (locked for the transaction)."""
    parts = refresh_token.split(".")
    if len(parts) != 3 or parts[0] != REFRESH_MARK or len(parts[1]) != 32 or not parts[2]:
        return None
    row = auth_sessions.refresh_token_for_update(session, parts[1])
    if row is None or not hmac.compare_digest(row.token_hash, _hash(parts[2])):
        return None
    return row


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
