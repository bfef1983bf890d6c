"""Builds authentication for the API services, and account management for the command line, from
the settings.

Apart from the runtime's other parts because a worker never authenticates anyone: the JWT, argon2
and cryptography stack it would otherwise load costs every worker process about 11 MB.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tars.services.auth.accounts import Accounts
from tars.services.auth.credentials import Authenticator
from tars.services.auth.invalidations import Invalidations
from tars.services.auth.invalidations_file import DataDirInvalidations
from tars.services.auth.invalidations_redis import RedisInvalidations
from tars.services.auth.security import Security
from tars.services.auth.sessions import LoginSessions, SessionLifetimes
from tars.services.auth.tokens import TokenService
from tars.services.auth.watch import CredentialWatch
from tars.settings import Settings
from tars.storage.database import SessionFactory, make_session_factory
from tars.wiring.keys import jwt_keys


def make_invalidations(settings: Settings) -> Invalidations:
    """How this deployment's processes tell each other to forget cached credentials."""
    if settings.redis_url is None:
        return DataDirInvalidations(settings.data_dir)
    return RedisInvalidations(settings.redis_url)


def build_security(settings: Settings, sessions: SessionFactory) -> Security:
    signing_key, verifying_key = jwt_keys(settings)
    tokens = TokenService(
        signing_key, settings.jwt_expires_seconds, algorithm=settings.jwt_algorithm, verifying_key=verifying_key
    )
    invalidations = make_invalidations(settings)
    authenticator = Authenticator(
        tokens,
        sessions,
        invalidations,
        cache_seconds=settings.auth_cache_seconds,
        last_use_flush_seconds=settings.api_key_last_used_flush_seconds,
    )
    lifetimes = SessionLifetimes(settings.refresh_token_expires_seconds, settings.session_max_seconds)
    return Security(
        tokens=tokens,
        invalidations=invalidations,
        authenticator=authenticator,
        logins=LoginSessions(sessions, tokens, lifetimes, invalidations),
        accounts=Accounts.on(sessions, invalidations),
        watch=CredentialWatch(authenticator),
    )


@contextmanager
def open_accounts(settings: Settings) -> Iterator[Accounts]:
    """Users and API keys for the command line, on the settings' database; what changes is announced
    to the running services at once. Embedded, the schema is brought up to date first (as `tars up`
    would)."""
    from tars.wiring.database import command_engine  # Alembic: only for a command that migrates

    with command_engine(settings) as engine:
        invalidations = make_invalidations(settings)
        try:
            yield Accounts.on(make_session_factory(engine), invalidations)
        finally:
            invalidations.close()
