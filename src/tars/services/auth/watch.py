"""Connections that outlive a request — the live feed's WebSockets — held to the credential they
were admitted with.

A request is authenticated as it arrives; a WebSocket only once, when it connects, and it may stay
open for days. So each one is watched. When a change to its credential is announced — an API key
revoked, a login session ended, a user deactivated or demoted, in this process or any other,
through the same invalidations that keep the credential cache honest — the credential is
authenticated again, and if it no longer passes, the connection is told at once. When the
credential expires (an access token after minutes, a key on its date), likewise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass

from tars.domain.users import Credential, Principal
from tars.services.auth.credentials import Authenticator
from tars.services.auth.errors import AuthenticationFailed
from tars.services.auth.invalidations import concerns
from tars.storage.types import utcnow

log = logging.getLogger(__name__)

# While anything is watched, announcements that have to be looked for (embedded: a file that another
# process, such as `tars apikeys revoke`, appends to) are looked for this often: a stat call.
CHECK_SECONDS = 0.5
# A connection whose credential could not be checked again (the database away) is checked again after this.
RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class AccessEnded:
    """Why a watched connection's credential no longer admits it."""

    # True: revoked (the key revoked, the session ended, the user deactivated), and connecting again
    # with it cannot work. False: it expired, and a renewed credential may connect again.
    revoked: bool
    # Safe to show to the connection's holder.
    reason: str


class Watched:
    """One connection's hold on its credential: ``ended`` resolves on the connection's event loop
    when the credential stops admitting it."""

    def __init__(self, credential: str, principal: Principal, loop: asyncio.AbstractEventLoop) -> None:
        self.credential = credential
        self.principal = principal
        self._loop = loop
        self.ended: asyncio.Future[AccessEnded] = loop.create_future()
        self._expiry: asyncio.TimerHandle | None = None
        if principal.expires_at is not None:  # a connection must not outlive its credential
            delay = max(0.0, (principal.expires_at - utcnow()).total_seconds())
            self._expiry = loop.call_later(delay, self._end, _expiry(principal))

    def _end_from_any_thread(self, why: AccessEnded) -> None:
        with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._end, why)

    def _end(self, why: AccessEnded) -> None:
        self._cancel_expiry()
        if not self.ended.done():
            self.ended.set_result(why)

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None


class CredentialWatch:
    """Admits long-lived connections and ends them when their credential is revoked or expires.

    Announcements arrive on whichever thread heard them (the Redis listener, a request's thread);
    the connections they concern are checked again on a thread of this watch's own, against the
    database when the cache was told to forget, and told on their own event loops."""

    def __init__(self, authenticator: Authenticator, *, check_seconds: float = CHECK_SECONDS) -> None:
        self._authenticator = authenticator
        self._check_seconds = check_seconds
        self._watched: set[Watched] = set()
        self._lock = threading.Lock()
        # Batches of connections to check again; None stops the thread.
        self._rechecks: queue.SimpleQueue[list[Watched] | None] = queue.SimpleQueue()
        self._announcements_heard = 0
        self._thread: threading.Thread | None = None
        # Connections whose check failed (not their credential: the database), and when to try again.
        self._unchecked: list[Watched] = []
        self._retry_at = 0.0

    async def admit(self, credential: str) -> Watched:
        """Authenticate ``credential`` for a connection that stays open (AuthenticationFailed as
        `Authenticator.authenticate`), and watch it from now on; ``release`` it when it closes.
        Call on the connection's event loop."""
        self._start()
        heard = self._announcements_heard
        principal = self._authenticator.cached(credential)
        if principal is None:  # the database, from a thread: never on the event loop
            principal = await asyncio.to_thread(self._authenticator.authenticate, credential)
        watched = Watched(credential, principal, asyncio.get_running_loop())
        with self._lock:
            self._watched.add(watched)
        if self._announcements_heard != heard:
            self._rechecks.put([watched])  # a change announced while it was authenticated may concern it
        return watched

    def release(self, watched: Watched) -> None:
        """Stop watching (the connection closed). Call on its event loop."""
        with self._lock:
            self._watched.discard(watched)
        watched._cancel_expiry()

    @property
    def watching(self) -> int:
        return len(self._watched)

    # announcements

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None:
                return
            self._authenticator.follow(self._heard)
            self._thread = threading.Thread(target=self._run, name="tars-credential-watch", daemon=True)
            self._thread.start()

    def _heard(self, topic: str | None) -> None:
        self._announcements_heard += 1
        with self._lock:
            affected = [watched for watched in self._watched if concerns(topic, watched.principal)]
        if affected:
            self._rechecks.put(affected)

    def _run(self) -> None:
        while True:
            try:
                batch = self._rechecks.get(timeout=self._check_seconds)
            except queue.Empty:
                batch = []
            if batch is None:
                return
            try:
                if not batch and self._watched:
                    self._authenticator.check_announcements()  # what it hears comes back through _heard
                if self._unchecked and time.monotonic() >= self._retry_at:
                    batch, self._unchecked = batch + self._unchecked, []
                self._recheck(batch)
            except Exception:  # this thread must outlive whatever went wrong once
                log.exception("checking live connections' credentials failed")

    def _recheck(self, batch: list[Watched]) -> None:
        # Connections on one credential share its answer; None: it still admits them.
        verdicts: dict[str, AccessEnded | None] = {}
        failed: set[str] = set()
        for watched in batch:
            with self._lock:
                if watched not in self._watched:
                    continue  # closed meanwhile
            if watched.credential not in verdicts and watched.credential not in failed:
                try:
                    verdicts[watched.credential] = _verdict(self._authenticator, watched)
                except Exception as exc:
                    # The database is away. The connection stays open meanwhile rather than
                    # closing every dashboard on an outage; what was announced is checked again.
                    log.warning("could not check a live connection's credential again: %s", exc)
                    failed.add(watched.credential)
            if watched.credential in failed:
                self._unchecked.append(watched)
                self._retry_at = time.monotonic() + RETRY_SECONDS
                continue
            why = verdicts[watched.credential]
            if why is not None:
                watched._end_from_any_thread(why)

    def close(self) -> None:
        if self._thread is not None:
            self._rechecks.put(None)
            self._thread.join(timeout=5)


def _verdict(authenticator: Authenticator, watched: Watched) -> AccessEnded | None:
    try:
        authenticator.authenticate(watched.credential)
    except AuthenticationFailed as exc:
        principal = watched.principal
        if principal.expires_at is not None and principal.expires_at <= utcnow():
            return _expiry(principal)
        return AccessEnded(revoked=True, reason=str(exc))
    return None


def _expiry(principal: Principal) -> AccessEnded:
    if principal.credential is Credential.API_KEY:
        return AccessEnded(revoked=False, reason="this API key has expired")
    return AccessEnded(revoked=False, reason="the access token has expired; renew it and connect again")
