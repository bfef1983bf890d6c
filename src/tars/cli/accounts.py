"""The account services (users, API keys) for the commands that manage them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from tars.domain.errors import TarsError
from tars.settings import Settings

if TYPE_CHECKING:
    from tars.services.auth.accounts import Accounts


@contextmanager
def accounts(settings: Settings) -> Iterator[Accounts]:
    """The account services on the settings' database; a domain error becomes the command's error."""
    from tars.wiring.security import open_accounts

    try:
        with open_accounts(settings) as opened:
            yield opened
    except TarsError as exc:
        raise click.ClickException(str(exc)) from exc
