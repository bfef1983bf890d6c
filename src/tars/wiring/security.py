"""Builds authentication for the API services from the settings.

Apart from the runtime's other parts because a worker never authenticates anyone: the JWT, argon2
and cryptography stack it would otherwise load costs every worker process about 11 MB.
"""

from __future__ import annotations

from tars.bus.base import Invalidations
from tars.bus.memory import DataDirInvalidations
from tars.bus.redis_invalidations import RedisInvalidations
from tars.services.auth import TokenService
from tars.services.credentials import Authenticator
from tars.services.login_sessions import SessionLifetimes
from tars.services.security import Security
from tars.settings import Settings
from tars.storage.database import SessionFactory
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
    return Security(
        tokens=tokens,
        invalidations=invalidations,
        authenticator=authenticator,
        lifetimes=SessionLifetimes(settings.refresh_token_expires_seconds, settings.session_max_seconds),
    )
