"""How processes tell each other that a cached credential changed (revoked, deactivated, demoted)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tars.domain.users import Credential, Principal

# Called with what changed ("key:<prefix>", "user:<id>", "session:<id>"), or with None when anything
# may have changed (a listener that was disconnected cannot know what it missed).
InvalidationHandler = Callable[[str | None], None]


def key_topic(prefix: str) -> str:
    return f"key:{prefix}"


def user_topic(user_id: int) -> str:
    return f"user:{user_id}"


def session_topic(session_id: str) -> str:
    return f"session:{session_id}"


def concerns(topic: str | None, principal: Principal) -> bool:
    """Whether what ``topic`` announces may change what ``principal``'s credential stands for."""
    if topic is None:
        return True
    kind, _, name = topic.partition(":")
    if kind == "user":
        return str(principal.user_id) == name  # the user's tokens and keys alike
    if kind == "key":
        return principal.credential is Credential.API_KEY and principal.credential_id == name
    if kind == "session":
        return principal.credential is Credential.TOKEN and principal.credential_id == name
    return True  # a topic this version does not know: assume the worst


class Invalidations(Protocol):
    def announce(self, topic: str) -> None: ...

    def listen(self, handler: InvalidationHandler) -> None:
        """Call ``handler`` for every announcement from now on, in any process."""
        ...

    @property
    def reliable(self) -> bool:
        """False while announcements may be missed: caches must not be trusted then."""
        ...

    def check(self) -> None:
        """Deliver what other processes announced, for an implementation that has to look (called
        before every cached answer; must cost microseconds)."""
        ...

    def close(self) -> None: ...
