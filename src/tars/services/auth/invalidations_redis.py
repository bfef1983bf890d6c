"""Credential invalidations over Redis pub/sub, so a key revoked on one replica is refused on all."""

from __future__ import annotations

import contextlib
import logging
import threading

import redis

from tars.bus import keys
from tars.services.auth.invalidations import InvalidationHandler

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class RedisInvalidations:
    """A listener thread per process. Pub/sub delivers nothing to a disconnected subscriber, so
    while the thread is not subscribed ``reliable`` is False, and on every (re)subscription the
    handlers hear None: forget everything, it may have changed meanwhile."""

    def __init__(self, url: str) -> None:
        # Pings on an idle connection notice a dead server within the interval.
        self._redis = redis.Redis.from_url(url, decode_responses=True, health_check_interval=5, socket_timeout=10)
        database = int(self._redis.connection_pool.connection_kwargs.get("db", 0))
        self._channel = keys.auth_invalidations(database)
        self._handlers: list[InvalidationHandler] = []
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def reliable(self) -> bool:
        return self._subscribed.is_set()

    def announce(self, topic: str) -> None:
        for handler in list(self._handlers):
            handler(topic)  # this process at once, whatever Redis does
        try:
            self._redis.publish(self._channel, topic)
        except redis.RedisError as exc:
            # The others are unsubscribed too when Redis is down, and so trust no cache until they
            # are back: they read the revocation from the database.
            log.warning("could not announce %s to the other replicas: %s", topic, exc)

    def listen(self, handler: InvalidationHandler) -> None:
        self._handlers.append(handler)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tars-auth-invalidations", daemon=True)
                self._thread.start()

    def check(self) -> None:
        return None  # the listener thread delivers as messages arrive

    def _run(self) -> None:
        while not self._stopping.is_set():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]
            try:
                pubsub.subscribe(self._channel)
                pubsub.get_message(timeout=5)  # the subscription's confirmation
                self._subscribed.set()
                self._tell(None)
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._tell(str(message["data"]))
            except (redis.RedisError, OSError) as exc:
                if not self._stopping.is_set():
                    log.warning("credential invalidations unavailable (%s); caches bypassed until back", exc)
            finally:
                self._subscribed.clear()
                with contextlib.suppress(redis.RedisError, OSError):
                    pubsub.close()
            self._stopping.wait(RETRY_SECONDS)

    def _tell(self, topic: str | None) -> None:
        for handler in list(self._handlers):
            try:
                handler(topic)
            except Exception:  # one broken handler must not stop the others hearing
                log.exception("credential invalidation handler failed")

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._redis.close()
