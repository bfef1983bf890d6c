"""Users and API keys, as an administrator manages them (through the API or the command line)."""

from __future__ import annotations

from dataclasses import dataclass

from tars.services.auth.apikeys import ApiKeys
from tars.services.auth.invalidations import Invalidations
from tars.services.auth.users import Users
from tars.storage.database import SessionFactory


@dataclass(frozen=True)
class Accounts:
    users: Users
    api_keys: ApiKeys

    @classmethod
    def on(cls, sessions: SessionFactory, invalidations: Invalidations) -> Accounts:
        return cls(Users(sessions, invalidations), ApiKeys(sessions, invalidations))
