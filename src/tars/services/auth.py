"""Users, passwords, and the signed access tokens a login session hands out."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from sqlalchemy.orm import Session

from tars.domain.audit import AuditAction
from tars.domain.errors import Conflict, InvalidField, NotFound
from tars.domain.users import Credential, Principal, Role
from tars.services import audit
from tars.services.passwords import hash_password, verify_password
from tars.storage import users
from tars.storage.tables import UserRow
from tars.storage.types import utcnow

ISSUER = "tars"
AUDIENCE = "tars-api"
MIN_PASSWORD_LENGTH = 8
# Symmetric (the secret from settings) or asymmetric (a key pair: replicas that only verify could
# hold the public key alone).
ALGORITHMS = ("HS256", "RS256", "EdDSA")

__all__ = ["AuthenticationFailed", "IssuedToken", "Principal", "TokenService"]


class AuthenticationFailed(Exception):
    """Credentials or a token could not be accepted; the message is safe to show."""


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


VERIFIED_TOKENS_KEPT = 10_000


@dataclass(frozen=True)
class VerifiedToken:
    principal: Principal
    # The login session the token belongs to: revoking it revokes the token.
    session_id: str | None


class TokenService:
    def __init__(
        self,
        signing_key: Any,
        expires_seconds: int,
        *,
        algorithm: str = "HS256",
        verifying_key: Any = None,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported JWT algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")
        self._signing_key = signing_key
        self._verifying_key = verifying_key if verifying_key is not None else signing_key
        self.algorithm = algorithm
        self.expires_seconds = expires_seconds
        # Tokens whose signature and claims were checked: token -> (what it says, valid from, until).
        # A token is immutable, so checking it again only re-derives the same answer; only the
        # clock matters, and a hit checks it. Revocation is the session's and the user's business.
        self._verified: dict[str, tuple[VerifiedToken, float, float]] = {}
        self._verified_lock = threading.Lock()

    def issue(self, user: UserRow, *, session_id: str | None = None) -> IssuedToken:
        now = utcnow()
        claims: dict[str, Any] = {
            "sub": str(user.id),
            "name": user.username,
            "role": user.role,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(seconds=self.expires_seconds),
            "jti": uuid.uuid4().hex,
        }
        if session_id is not None:
            claims["sid"] = session_id
        token = jwt.encode(claims, self._signing_key, algorithm=self.algorithm)
        return IssuedToken(token, self.expires_seconds)

    def verify(self, token: str) -> Principal:
        return self.verify_claims(token).principal

    def verify_claims(self, token: str) -> VerifiedToken:
        known = self._verified.get(token)
        if known is not None:
            verified, valid_from, valid_until = known
            if valid_from <= time.time() < valid_until:
                return verified
            with self._verified_lock:
                self._verified.pop(token, None)
        try:
            # Only the configured algorithm: a token may not choose how it is checked (alg: none,
            # or HS256 signed with a public key).
            claims = jwt.decode(
                token,
                self._verifying_key,
                algorithms=[self.algorithm],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "nbf", "sub", "role", "iss", "aud"]},
            )
            principal = Principal(
                user_id=int(claims["sub"]), username=str(claims.get("name", "")), role=Role(claims["role"])
            )
            session_id = claims.get("sid")
            verified = VerifiedToken(principal, str(session_id) if session_id is not None else None)
            valid_from, valid_until = float(claims["nbf"]), float(claims["exp"])
        except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
            raise AuthenticationFailed("invalid or expired token") from exc
        with self._verified_lock:
            if len(self._verified) >= VERIFIED_TOKENS_KEPT:
                self._verified.pop(next(iter(self._verified)), None)  # the oldest
            self._verified[token] = (verified, valid_from, valid_until)
        return verified


def valid_username(username: str) -> bool:
    return 0 < len(username) <= 64 and username.replace("-", "").replace("_", "").replace(".", "").isalnum()


def create_user(session: Session, username: str, password: str, role: Role, *, by: Principal | None = None) -> UserRow:
    if not valid_username(username):
        raise InvalidField("username", "use 1-64 letters, digits, '.', '-' or '_'")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidField("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        raise InvalidField("password", "at most 1024 characters")
    row = users.create_user(session, username, hash_password(password), role)
    audit.record(session, by, AuditAction.USER_CREATED, target=username, details={"role": role.value})
    return row


def update_user(
    session: Session, by: Principal | None, user_id: int, *, role: Role | None = None, active: bool | None = None
) -> UserRow:
    """Change a user's role or standing; the caller tells every replica to forget cached credentials."""
    user = users.get_user(session, user_id)
    if user is None:
        raise NotFound("user", user_id)
    if by is not None and by.user_id == user_id and (active is False or (role is not None and role != user.role)):
        raise Conflict("an admin cannot demote or deactivate themself; ask another admin")
    if role is not None and role != user.role:
        audit.record(
            session, by, AuditAction.ROLE_CHANGED, target=user.username, details={"from": user.role, "to": role.value}
        )
        user.role = role.value
    if active is not None and active != user.active:
        action = AuditAction.USER_REACTIVATED if active else AuditAction.USER_DEACTIVATED
        audit.record(session, by, action, target=user.username)
        user.active = active
    return user


def authenticate(session: Session, username: str, password: str) -> UserRow:
    user = users.get_user_by_username(session, username)
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.active:
        # One message for every cause, so a login never tells which usernames exist.
        raise AuthenticationFailed("incorrect username or password")
    return user


def password_principal(user: UserRow, address: str | None) -> Principal:
    return Principal(user.id, user.username, Role(user.role), Credential.PASSWORD, None, address)
