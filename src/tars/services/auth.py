"""Users, logins and the bearer tokens they get."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import jwt
from sqlalchemy.orm import Session

from tars.domain.errors import InvalidField
from tars.domain.users import Role
from tars.services.passwords import hash_password, verify_password
from tars.storage import users
from tars.storage.tables import UserRow
from tars.storage.types import utcnow

ALGORITHM = "HS256"
ISSUER = "tars"
AUDIENCE = "tars-api"
MIN_PASSWORD_LENGTH = 8


class AuthenticationFailed(Exception):
    """Credentials or a token could not be accepted; the message is safe to show."""


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    role: Role


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


class TokenService:
    def __init__(self, secret: str, expires_seconds: int) -> None:
        self._secret = secret
        self.expires_seconds = expires_seconds

    def issue(self, user: UserRow) -> IssuedToken:
        now = utcnow()
        claims = {
            "sub": str(user.id),
            "name": user.username,
            "role": user.role,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(seconds=self.expires_seconds),
        }
        return IssuedToken(jwt.encode(claims, self._secret, algorithm=ALGORITHM), self.expires_seconds)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "nbf", "sub", "role", "iss", "aud"]},
            )
            return Principal(
                user_id=int(claims["sub"]), username=str(claims.get("name", "")), role=Role(claims["role"])
            )
        except (jwt.PyJWTError, ValueError, KeyError) as exc:
            raise AuthenticationFailed("invalid or expired token") from exc


def create_user(session: Session, username: str, password: str, role: Role) -> UserRow:
    if not username or len(username) > 64 or not username.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise InvalidField("username", "use 1-64 letters, digits, '.', '-' or '_'")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidField("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
    return users.create_user(session, username, hash_password(password), role)


def authenticate(session: Session, username: str, password: str) -> UserRow:
    user = users.get_user_by_username(session, username)
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.active:
        # One message for every cause, so a login never tells which usernames exist.
        raise AuthenticationFailed("incorrect username or password")
    return user


def principal_still_active(session: Session, principal: Principal) -> bool:
    user = users.get_user(session, principal.user_id)
    return user is not None and user.active
