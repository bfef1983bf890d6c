"""The signed access tokens a login session hands out, and their checking on every request."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import jwt

from tars.domain.users import Principal, Role
from tars.services.auth.errors import AuthenticationFailed
from tars.storage.types import utcnow

ISSUER = "tars"
AUDIENCE = "tars-api"
# Symmetric (the secret from settings) or asymmetric (a key pair: replicas that only verify could
# hold the public key alone).
ALGORITHMS = ("HS256", "RS256", "EdDSA")

__all__ = ["AuthenticationFailed", "IssuedToken", "Subject", "TokenService", "VerifiedToken"]


class Subject(Protocol):
    """Whom a token is issued to: a user record (or anything that reads like one)."""

    @property
    def id(self) -> int: ...

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...


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
    expires_at: datetime


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

    def issue(self, user: Subject, *, session_id: str | None = None) -> IssuedToken:
        now = utcnow()
        claims: dict[str, Any] = {
            "sub": str(user.id),
            "name": user.username,
            "role": str(user.role),
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
            valid_from, valid_until = float(claims["nbf"]), float(claims["exp"])
            verified = VerifiedToken(
                principal,
                str(session_id) if session_id is not None else None,
                datetime.fromtimestamp(valid_until, UTC),
            )
        except (jwt.PyJWTError, ValueError, KeyError, TypeError, OverflowError, OSError) as exc:
            raise AuthenticationFailed("invalid or expired token") from exc
        with self._verified_lock:
            if len(self._verified) >= VERIFIED_TOKENS_KEPT:
                self._verified.pop(next(iter(self._verified)), None)  # the oldest
            self._verified[token] = (verified, valid_from, valid_until)
        return verified
