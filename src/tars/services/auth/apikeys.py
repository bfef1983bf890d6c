"""API keys for machines: random secrets shown once, stored as hashes, found by their prefix.

A key reads ``tars_<12 hex>_<43 base64url>``: the first two parts are its public prefix (kept in
the database, indexed, safe to show and log), the last 32 random bytes its secret. The secret has
256 bits of entropy, so a plain SHA-256 of the key is as strong as a slow password hash here, and
cheap enough to check on every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from tars.domain.audit import AuditAction
from tars.domain.errors import Conflict, InvalidField, NotFound
from tars.domain.users import ApiKey, Principal, Role
from tars.services import audit
from tars.services.auth.invalidations import Invalidations, key_topic
from tars.storage import apikeys, users
from tars.storage.database import SessionFactory, transaction
from tars.storage.tables import ApiKeyRow
from tars.storage.types import utcnow

KEY_MARK = "tars_"
SECRET_BYTES = 32
_KEY_SHAPE = re.compile(r"^tars_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$")
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_LIFETIME = timedelta(days=3650)


@dataclass(frozen=True)
class CreatedKey:
    record: ApiKey
    # The only time the whole key exists outside its holder.
    key: str


def looks_like_key(credential: str) -> bool:
    return credential.startswith(KEY_MARK)


def split_key(key: str) -> tuple[str, str] | None:
    """(prefix, hash) of a well-formed key; None for anything else."""
    if not _KEY_SHAPE.match(key):
        return None
    return key[:17], hash_key(key)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def same_hash(stored: str, presented: str) -> bool:
    return hmac.compare_digest(stored, presented)


def parse_lifetime(text: str) -> timedelta:
    """ "30d", "12h", "90m", "2w" ... as a duration."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise InvalidField("expires_in", "give a duration such as 30d, 12h, 90m or 2w")
    lifetime = timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
    if lifetime > MAX_LIFETIME:
        raise InvalidField("expires_in", "at most 3650d")
    return lifetime


class ApiKeys:
    def __init__(self, sessions: SessionFactory, invalidations: Invalidations) -> None:
        self._sessions = sessions
        self._invalidations = invalidations

    def create(
        self,
        by: Principal | None,
        *,
        username: str,
        role: Role,
        name: str | None = None,
        expires_in: str | None = None,
    ) -> CreatedKey:
        """A key for a machine acting as ``username`` with ``role``, expiring after ``expires_in``
        ("30d", "12h" ...; None: never)."""
        lifetime = parse_lifetime(expires_in) if expires_in else None
        with transaction(self._sessions) as session:
            return add_key(session, by, username=username, role=role, name=name, lifetime=lifetime)

    def list(self, *, username: str | None = None, include_revoked: bool = False) -> list[ApiKey]:
        """Keys in id order; only ``username``'s when given (none for a user that does not exist)."""
        with self._sessions() as session:
            return apikeys.list_keys(session, username=username, include_revoked=include_revoked)

    def revoke(self, by: Principal | None, key: int | str) -> ApiKey:
        """Revoke by id or by prefix: every replica refuses the key from the moment this returns."""
        with transaction(self._sessions) as session:
            row = _find(session, key)
            if not row.active:
                raise Conflict(f"API key {row.key_prefix} is already revoked")
            row.active = False
            row.revoked_at = utcnow()
            audit.record(session, by, AuditAction.API_KEY_REVOKED, target=row.key_prefix)
            revoked = apikeys.key_record(row)
        self._invalidations.announce(key_topic(revoked.prefix))
        return revoked


def add_key(
    session: Session,
    by: Principal | None,
    *,
    username: str,
    role: Role,
    name: str | None = None,
    lifetime: timedelta | None = None,
) -> CreatedKey:
    """`ApiKeys.create` inside the caller's transaction (seeding many keys at once)."""
    owner = users.get_user_by_username(session, username)
    if owner is None:
        raise InvalidField("user", f"no user {username!r}")
    if not owner.active:
        raise InvalidField("user", f"user {username!r} is deactivated")
    if not Role(owner.role).allows(role):
        raise InvalidField("role", f"user {username!r} is {owner.role}; a key cannot have more than its user")
    prefix = f"{KEY_MARK}{secrets.token_hex(6)}"
    key = f"{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    now = utcnow()
    row = apikeys.add_key(
        session,
        ApiKeyRow(
            user_id=owner.id,
            name=name,
            key_prefix=prefix,
            key_hash=hash_key(key),
            role=role.value,
            active=True,
            created_at=now,
            expires_at=now + lifetime if lifetime else None,
            created_by=by.user_id if by else None,
        ),
    )
    audit.record(
        session,
        by,
        AuditAction.API_KEY_CREATED,
        target=prefix,
        details={"user": owner.username, "role": role.value, "name": name, "expires_at": _iso(row.expires_at)},
    )
    return CreatedKey(apikeys.key_record(row), key)


def _find(session: Session, key: int | str) -> ApiKeyRow:
    if isinstance(key, int):
        return apikeys.get_key(session, key)
    found = apikeys.key_with_owner(session, key)
    if found is None:
        raise NotFound("API key", key)
    return found[0]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
