"""`tars apikeys`: API keys for machines, managed at the database as an administrator would through
/api/v1/apikeys (the same services, audited as the system)."""

from __future__ import annotations

import click

from tars.cli.accounts import accounts
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
    with accounts(settings) as opened:
        created = opened.api_keys.create(None, username=username, role=Role(role), name=name, expires_in=expires_in)
    key = created.record
    expiry = key.expires_at.isoformat() if key.expires_at else "never"
    click.echo(f"created API key {key.prefix} (id {key.id}) for {username} as {role}", err=True)
    click.echo(f"expires: {expiry}; store the key now, it is not shown again:", err=True)
    click.echo(created.key)


@apikeys.command("list")
@click.option("--user", "username", default=None, help="Only this user's keys")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys")
@click.pass_obj
def list_keys(settings: Settings, username: str | None, include_revoked: bool) -> None:
    """List keys (their prefixes; never the keys)."""
    with accounts(settings) as opened:
        names = {user.id: user.username for user in opened.users.list()}
        if username is not None and username not in names.values():
            raise click.ClickException(f"no user {username!r}")
        keys = opened.api_keys.list(username=username, include_revoked=include_revoked)
    click.echo(f"{'id':>5}  {'prefix':17}  {'user':16} {'role':9} {'state':8} {'expires':25} {'last used':25} name")
    for key in keys:
        state = "active" if key.active else "revoked"
        expires = key.expires_at.isoformat(timespec="seconds") if key.expires_at else "never"
        used = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "-"
        click.echo(
            f"{key.id:>5}  {key.prefix:17}  {names.get(key.user_id, '?'):16} {key.role:9} {state:8} "
            f"{expires:25} {used:25} {key.name or ''}"
        )


@apikeys.command("revoke")
@click.argument("key")
@click.pass_obj
def revoke(settings: Settings, key: str) -> None:
    """Revoke KEY (its id or its tars_... prefix); every running service refuses it at once."""
    with accounts(settings) as opened:
        revoked = opened.api_keys.revoke(None, int(key) if key.isdigit() else key)
    click.echo(f"revoked API key {revoked.prefix}")
