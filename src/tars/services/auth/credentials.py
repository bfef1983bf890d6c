"""Who is calling: a bearer credential (access token or API key) resolved to a principal.

Every request is authenticated, so the answer must cost microseconds, not a database round trip.
What the database says about a key, a user or a login session is cached in memory; whatever
changes it (a revocation, a logout, a role change) is announced, and every replica drops its copy
at once. While announcements could be missed (Redis unreachable), the cache is not trusted and the
database is asked instead. Entries also age out, as a last resort.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from tars.domain.users import Credential, Principal, Role
from tars.services.auth import apikeys
from tars.services.auth.errors import AuthenticationFailed
from tars.services.auth.invalidations import (
    InvalidationHandler,
    Invalidations,
    key_topic,
    session_topic,
    user_topic,
)
from tars.services.auth.sessions import session_is_live
from tars.services.auth.tokens import TokenService
from tars.storage import apikeys as apikey_rows
from tars.storage import users
from tars.storage.database import SessionFactory, transaction
from tars.storage.types import utcnow

log = logging.getLogger(__name__)

MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class _Key:
    key_id: int
    key_hash: str
    role: Role
    user_id: int
    username: str
    expires_at: datetime | None
    usable: bool  # active, and its user active


@dataclass(frozen=True)
class _User:
    role: Role
    active: bool


class Authenticator:
    def __init__(
        self,
        tokens: TokenService,
        sessions: SessionFactory,
        invalidations: Invalidations,
        *,
        cache_seconds: float = 300.0,
        last_use_flush_seconds: float = 60.0,
    ) -> None:
        self.tokens = tokens
        self._sessions = sessions
        self._invalidations = invalidations
        self._cache_seconds = cache_seconds
        self._flush_seconds = last_use_flush_seconds
        self._cache: dict[str, tuple[float, object]] = {}
        # Counts announcements: what was read before one arrived may be stale and is not kept.
        self._generation = 0
        self._lock = threading.Lock()
        self._last_use: dict[int, datetime] = {}
        self._started = False
        self._followers: list[InvalidationHandler] = []
        self._stopping = threading.Event()
        self._flusher: threading.Thread | None = None

    # the two questions

    def authenticate(self, credential: str) -> Principal:
        """The principal ``credential`` stands for; AuthenticationFailed (safe to show) otherwise."""
        self._start()
        self._invalidations.check()
        if apikeys.looks_like_key(credential):
            return self._by_key(credential)
        return self._by_token(credential)

    def cached(self, credential: str) -> Principal | None:
        """The principal, if the answer needs no database (for code that must not block)."""
        self._invalidations.check()
        try:
            if apikeys.looks_like_key(credential):
                return self._by_key(credential, cached_only=True)
            return self._by_token(credential, cached_only=True)
        except _NeedsDatabase:
            return None

    # announcements

    def forget(self, topic: str) -> None:
        """Drop ``topic`` here and in every other process (call after the change is committed)."""
        self._invalidations.announce(topic)

    def follow(self, handler: InvalidationHandler) -> None:
        """Call ``handler`` with every announcement heard, in any process, after this cache has
        forgotten what it names: whatever the handler authenticates again is read afresh. Called
        on whichever thread heard it, so it must hand slow work off."""
        self._start()
        self._followers.append(handler)

    def check_announcements(self) -> None:
        """Hear what other processes announced, for invalidations that have to look (a stat call)."""
        self._invalidations.check()

    def _heard(self, topic: str | None) -> None:
        self._forget(topic)
        for handler in list(self._followers):
            try:
                handler(topic)
            except Exception:  # a broken follower must not keep the others from hearing
                log.exception("credential change follower failed")

    def _forget(self, topic: str | None) -> None:
        with self._lock:
            self._generation += 1
            if topic is None:
                self._cache.clear()
            elif topic.startswith("user:"):
                user_id = int(topic[5:])
                self._cache.pop(topic, None)
                for name, (_, entry) in list(self._cache.items()):
                    if isinstance(entry, _Key) and entry.user_id == user_id:
                        del self._cache[name]
            else:
                self._cache.pop(topic, None)

    # API keys

    def _by_key(self, key: str, *, cached_only: bool = False) -> Principal:
        parts = apikeys.split_key(key)
        if parts is None:
            raise AuthenticationFailed("invalid API key")
        prefix, presented_hash = parts
        entry = self._lookup(key_topic(prefix), cached_only, lambda: self._load_key(prefix))
        if not isinstance(entry, _Key) or not apikeys.same_hash(entry.key_hash, presented_hash):
            raise AuthenticationFailed("invalid API key")
        if not entry.usable:
            raise AuthenticationFailed("this API key has been revoked")
        now = utcnow()
        if entry.expires_at is not None and entry.expires_at <= now:
            raise AuthenticationFailed("this API key has expired")
        self._last_use[entry.key_id] = now  # written to the database in batches, not per request
        return Principal(
            entry.user_id, entry.username, entry.role, Credential.API_KEY, prefix, expires_at=entry.expires_at
        )

    def _load_key(self, prefix: str) -> _Key | None:
        with self._sessions() as session:
            found = apikey_rows.key_with_owner(session, prefix)
        if found is None:
            return None
        key, owner = found
        role = min(Role(key.role), Role(owner.role), key=lambda r: r.rank)  # a demoted user's keys follow
        return _Key(key.id, key.key_hash, role, owner.id, owner.username, key.expires_at, key.active and owner.active)

    # access tokens

    def _by_token(self, token: str, *, cached_only: bool = False) -> Principal:
        verified = self.tokens.verify_claims(token)
        claimed = verified.principal
        assert claimed.user_id is not None
        user_id = claimed.user_id
        user = self._lookup(user_topic(user_id), cached_only, lambda: self._load_user(user_id))
        if not isinstance(user, _User):
            raise AuthenticationFailed("invalid or expired token")
        if not user.active:
            # Only the user's own, genuine token gets this far: telling them is telling no one else.
            raise AuthenticationFailed("this account has been deactivated")
        if verified.session_id is not None:
            session_id = verified.session_id
            live = self._lookup(session_topic(session_id), cached_only, lambda: self._load_session(session_id))
            if live is not True:
                raise AuthenticationFailed("this session has ended; log in again")
        role = min(claimed.role, user.role, key=lambda r: r.rank)
        return Principal(
            user_id, claimed.username, role, Credential.TOKEN, verified.session_id, expires_at=verified.expires_at
        )

    def _load_user(self, user_id: int) -> _User | None:
        with self._sessions() as session:
            row = users.get_user(session, user_id)
            return None if row is None else _User(Role(row.role), row.active)

    def _load_session(self, session_id: str) -> bool:
        with self._sessions() as session:
            return session_is_live(session, session_id, utcnow())

    # the cache

    def _lookup(self, name: str, cached_only: bool, load: Callable[[], object]) -> object:
        trusted = self._invalidations.reliable
        if trusted:
            hit = self._cache.get(name)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
        if cached_only:
            raise _NeedsDatabase
        generation = self._generation
        value = load()
        if trusted and value is not None:
            with self._lock:
                if generation != self._generation:
                    return value
                if len(self._cache) >= MAX_ENTRIES:
                    self._cache.clear()
                self._cache[name] = (time.monotonic() + self._cache_seconds, value)
        return value

    # last use of keys

    def _start(self) -> None:
        if self._started:
            return
        with self._lock:
            if self._started:
                return
            self._invalidations.listen(self._heard)
            self._flusher = threading.Thread(target=self._flush_periodically, name="tars-key-last-use", daemon=True)
            self._flusher.start()
            self._started = True

    def flush_last_use(self) -> None:
        uses, self._last_use = self._last_use, {}
        if not uses:
            return
        try:
            with transaction(self._sessions) as session:
                apikey_rows.record_last_use(session, uses)
        except Exception as exc:  # the database is away: keep them for the next try
            log.warning("could not record API keys' last use: %s", exc)
            for key_id, moment in uses.items():
                self._last_use.setdefault(key_id, moment)  # a use seen since is later

    def _flush_periodically(self) -> None:
        while not self._stopping.wait(self._flush_seconds):
            self.flush_last_use()

    def close(self) -> None:
        self._stopping.set()
        if self._flusher is not None:
            self._flusher.join(timeout=5)
        self.flush_last_use()


class _NeedsDatabase(Exception):
    pass
