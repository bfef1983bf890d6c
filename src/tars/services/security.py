"""What the API services authenticate requests with, held together for the runtime."""

from __future__ import annotations

from dataclasses import dataclass

from tars.bus.base import Invalidations
from tars.services.auth import TokenService
from tars.services.credentials import Authenticator
from tars.services.login_sessions import SessionLifetimes


@dataclass
class Security:
    tokens: TokenService
    invalidations: Invalidations
    authenticator: Authenticator
    lifetimes: SessionLifetimes

    def close(self) -> None:
        self.authenticator.close()
        self.invalidations.close()
