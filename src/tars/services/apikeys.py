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
from tars.domain.users import Principal, Role
from tars.services import audit
from tars.storage import apikeys, users
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
    row: ApiKeyRow
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


def create_key(
    session: Session,
    by: Principal | None,
    *,
    username: str,
    role: Role,
    name: str | None = None,
    lifetime: timedelta | None = None,
) -> CreatedKey:
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
    return CreatedKey(row, key)


def revoke_key(session: Session, by: Principal | None, key: int | str) -> ApiKeyRow:
    """Revoke by id or by prefix; the caller announces it to every replica after the commit."""
    row = _find(session, key)
    if not row.active:
        raise Conflict(f"API key {row.key_prefix} is already revoked")
    row.active = False
    row.revoked_at = utcnow()
    audit.record(session, by, AuditAction.API_KEY_REVOKED, target=row.key_prefix)
    return row


def _find(session: Session, key: int | str) -> ApiKeyRow:
    if isinstance(key, int):
        return apikeys.get_key(session, key)
    found = apikeys.key_with_owner(session, key)
    if found is None:
        raise NotFound("API key", key)
    return found[0]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
