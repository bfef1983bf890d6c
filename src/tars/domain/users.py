from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class Credential(StrEnum):
    """How a principal proved who it is."""

    PASSWORD = "password"
    TOKEN = "token"
    API_KEY = "api_key"


@dataclass(frozen=True)
class Principal:
    """Who makes a request, by which credential, and from where: what the audit log records."""

    user_id: int | None
    username: str
    role: Role
    credential: Credential = Credential.TOKEN
    # The API key (its public prefix) or the login session (refresh-token family) behind the request.
    credential_id: str | None = None
    address: str | None = None
    # When the credential stops being valid by itself (a token's or a key's expiry; None: never), so
    # whatever stays open on it (a live-feed WebSocket) ends then too.
    expires_at: datetime | None = None

    def at(self, address: str | None) -> Principal:
        return Principal(
            self.user_id, self.username, self.role, self.credential, self.credential_id, address, self.expires_at
        )


@dataclass(frozen=True)
class User:
    """An account as the services hand it out: never its password hash."""

    id: int
    username: str
    role: Role
    active: bool
    created_at: datetime


@dataclass(frozen=True)
class ApiKey:
    """A machine's key as it may be shown: its public prefix, never its secret or hash."""

    id: int
    # The key's public part ("tars_<12 hex>"), safe to show and log.
    prefix: str
    user_id: int
    name: str | None
    role: Role
    active: bool
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
