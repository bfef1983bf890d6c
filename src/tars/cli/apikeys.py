"""`tars apikeys`: API keys for machines, managed at the database as an administrator would through
/api/v1/apikeys (the same service functions, audited as the system)."""

from __future__ import annotations

import click

from tars.cli.database import database
from tars.domain.users import Role
from tars.settings import Settings


@click.group()
def apikeys() -> None:
    """Manage API keys."""


@apikeys.command("create")
@click.option("--user", "username", required=True, help="The user the key acts for")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True, help="At most the user's role")
@click.option("--expires-in", default=None, help="e.g. 30d, 12h, 2w (default: never)")
@click.option("--name", default=None, help="What the key is for")
@click.pass_obj
def create(settings: Settings, username: str, role: str, expires_in: str | None, name: str | None) -> None:
    """Create a key and print it. It is shown this once: only its hash is kept."""
    from tars.services.apikeys import create_key, parse_lifetime
    from tars.storage.database import make_session_factory, transaction

    with database(settings) as engine:
        sessions = make_session_factory(engine)
        lifetime = parse_lifetime(expires_in) if expires_in else None
        with transaction(sessions) as session:
            created = create_key(session, None, username=username, role=Role(role), name=name, lifetime=lifetime)
    expiry = created.row.expires_at.isoformat() if created.row.expires_at else "never"
    click.echo(f"created API key {created.row.key_prefix} (id {created.row.id}) for {username} as {role}", err=True)
    click.echo(f"expires: {expiry}; store the key now, it is not shown again:", err=True)
    click.echo(created.key)


@apikeys.command("list")
@click.option("--user", "username", default=None, help="Only this user's keys")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys")
@click.pass_obj
def list_keys(settings: Settings, username: str | None, include_revoked: bool) -> None:
    """List keys (their prefixes; never the keys)."""
    from tars.storage import apikeys as rows
    from tars.storage import users
    from tars.storage.database import make_session_factory

    with database(settings) as engine, make_session_factory(engine)() as session:
        user_id = None
        if username is not None:
            owner = users.get_user_by_username(session, username)
            if owner is None:
                raise click.ClickException(f"no user {username!r}")
            user_id = owner.id
        names = {user.id: user.username for user in users.list_users(session)}
        click.echo(f"{'id':>5}  {'prefix':17}  {'user':16} {'role':9} {'state':8} {'expires':25} {'last used':25} name")
        for key in rows.list_keys(session, user_id=user_id, include_revoked=include_revoked):
            state = "active" if key.active else "revoked"
            expires = key.expires_at.isoformat(timespec="seconds") if key.expires_at else "never"
            used = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "-"
            click.echo(
                f"{key.id:>5}  {key.key_prefix:17}  {names.get(key.user_id, '?'):16} {key.role:9} {state:8} "
                f"{expires:25} {used:25} {key.name or ''}"
            )


@apikeys.command("revoke")
@click.argument("key")
@click.pass_obj
def revoke(settings: Settings, key: str) -> None:
    """Revoke KEY (its id or its tars_... prefix); every running service refuses it at once."""
    from tars.services.apikeys import revoke_key
    from tars.services.credentials import key_topic
    from tars.storage.database import make_session_factory, transaction
    from tars.wiring.security import make_invalidations

    with database(settings) as engine:
        sessions = make_session_factory(engine)
        with transaction(sessions) as session:
            row = revoke_key(session, None, int(key) if key.isdigit() else key)
        invalidations = make_invalidations(settings)
        try:
            invalidations.announce(key_topic(row.key_prefix))
        finally:
            invalidations.close()
    click.echo(f"revoked API key {row.key_prefix}")
