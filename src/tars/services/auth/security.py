"""What the API services authenticate requests with and manage accounts through, held together
for the runtime."""

from __future__ import annotations

from dataclasses import dataclass

from tars.services.auth.accounts import Accounts
from tars.services.auth.credentials import Authenticator
from tars.services.auth.invalidations import Invalidations
from tars.services.auth.sessions import LoginSessions
from tars.services.auth.tokens import TokenService
from tars.services.auth.watch import CredentialWatch


@dataclass
class Security:
    tokens: TokenService
    invalidations: Invalidations
    authenticator: Authenticator
    logins: LoginSessions
    accounts: Accounts
    # Holds long-lived connections (the live feed's WebSockets) to the credential they connected with.
    watch: CredentialWatch

    def close(self) -> None:
        self.watch.close()
        self.authenticator.close()
        self.invalidations.close()
