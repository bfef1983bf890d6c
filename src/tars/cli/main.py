"""The `tars` command: a thin layer over the same functions the APIs use."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
from pydantic import ValidationError

from tars.cli import client
from tars.cli.accounts import accounts
from tars.cli.apikeys import apikeys
from tars.cli.dev import dev
from tars.cli.insights import insights
from tars.domain.users import Role
from tars.settings import Settings
from tars.tracing.logs import configure_logging
from tars.version import VERSION


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


# Libraries that log every step they take at INFO (httpx: a line per request; alembic: its
# migration context; the live feed's client: each reconnection, which `tars train` shows itself).
# A person asks for those with -v.
CHATTY_LIBRARIES = ("httpx", "httpcore", "alembic", "websockets", "tars.client")


@click.group()
@click.version_option(VERSION, prog_name="tars")
@click.option("-v", "--verbose", count=True, help="-v: the libraries' own logs too; -vv: everything, at DEBUG")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """T.A.R.S.: train, evaluate and operate reinforcement-learning agents."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise click.ClickException(f"invalid settings:\n{exc}") from exc
    configure_logging("DEBUG" if verbose > 1 else settings.log_level, settings.log_format)
    if not verbose:
        for name in CHATTY_LIBRARIES:
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    ctx.obj = settings


_PORT_HELP = "Default: the port from settings; 0 for a free port (the address is printed once listening)"


def _port(option: int | None, configured: int) -> int:
    return configured if option is None else option


def _logs(settings: Settings) -> tuple[str, str]:
    return settings.log_level, settings.log_format


def _trace(settings: Settings, service: str) -> None:
    from tars.tracing.setup import configure_tracing

    configure_tracing(
        service, settings.region, otlp_endpoint=settings.otlp_endpoint, sample_ratio=settings.trace_sample_ratio
    )


def _runtime(settings: Settings, *, migrate_schema: bool) -> Any:
    from tars.domain.errors import SchemaOutOfDate
    from tars.wiring.runtime import build_runtime

    try:
        return build_runtime(settings, migrate_schema=migrate_schema)
    except SchemaOutOfDate as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@click.option("--dashboard-port", type=click.IntRange(0, 65535), default=None, help=_PORT_HELP)
@click.option("--orchestration-port", type=click.IntRange(0, 65535), default=None, help=_PORT_HELP)
@click.option("--insight-port", type=click.IntRange(0, 65535), default=None, help=_PORT_HELP)
@click.pass_context
def up(
    ctx: click.Context, dashboard_port: int | None, orchestration_port: int | None, insight_port: int | None
) -> None:
    """Run every service in one process: embedded mode (or all-in-one on PostgreSQL and Redis)."""
    from tars.api.applications import create_dashboard_app, create_orchestration_app, shared_rate_limits
    from tars.cli.foreground import run_foreground
    from tars.cli.servers import make_server, server_url
    from tars.cli.workers import make_worker
    from tars.insight.app import create_insight_app
    from tars.wiring.insight import build_insight_engine

    settings = _settings(ctx)
    runtime = _runtime(settings, migrate_schema=True)
    limits = shared_rate_limits(runtime)
    dashboard = create_dashboard_app(runtime, rate_limits=limits)
    orchestration = create_orchestration_app(runtime, rate_limits=limits)
    insight = create_insight_app(runtime, build_insight_engine(runtime))
    servers = [
        make_server(dashboard, settings.host, _port(dashboard_port, settings.dashboard_port), *_logs(settings)),
        make_server(
            orchestration, settings.host, _port(orchestration_port, settings.orchestration_port), *_logs(settings)
        ),
        make_server(insight, settings.host, _port(insight_port, settings.insight_port), *_logs(settings)),
    ]
    mode = "embedded (SQLite, in-process bus)" if settings.embedded else "distributed (Redis)"
    _trace(settings, "up")

    def announce() -> None:  # once listening: with port 0, the ports are known only now
        dashboard_url, orchestration_url, insight_url = (server_url(server) for server in servers)
        click.echo(f"T.A.R.S. {VERSION} — {mode}; data in {settings.data_dir}")
        click.echo(f"  dashboard      {dashboard_url}/")
        click.echo(f"  dashboard-api  {dashboard_url}/docs")
        click.echo(f"  orchestration  {orchestration_url}/docs")
        click.echo(f"  insight-engine {insight_url}/health")
        click.echo("Press Ctrl-C to stop.")

    try:
        run_foreground(servers, make_worker(runtime, beside_apis=True), on_started=announce)
    finally:
        runtime.close()


@cli.command()
@click.argument("service", type=click.Choice(["dashboard-api", "orchestration", "insight-engine"]))
@click.option("--port", type=click.IntRange(0, 65535), default=None, help=_PORT_HELP)
@click.pass_context
def serve(ctx: click.Context, service: str, port: int | None) -> None:
    """Run one service (distributed mode)."""
    from tars.cli.foreground import run_foreground
    from tars.cli.servers import make_server, server_url

    settings = _settings(ctx)
    _trace(settings, service)
    runtime = _runtime(settings, migrate_schema=False)
    if service == "dashboard-api":
        from tars.api.applications import create_dashboard_app

        app, default_port = create_dashboard_app(runtime), settings.dashboard_port
    elif service == "orchestration":
        from tars.api.applications import create_orchestration_app

        app, default_port = create_orchestration_app(runtime), settings.orchestration_port
    else:
        from tars.insight.app import create_insight_app
        from tars.wiring.insight import build_insight_engine

        app, default_port = create_insight_app(runtime, build_insight_engine(runtime)), settings.insight_port
    try:
        server = make_server(app, settings.host, _port(port, default_port), *_logs(settings))
        run_foreground([server], None, on_started=lambda: click.echo(f"{service} listening on {server_url(server)}"))
    finally:
        runtime.close()


@cli.command()
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Where /metrics listens, 0 for a free port (printed). Default: worker_metrics_port (0 there: no /metrics)",
)
@click.pass_context
def worker(ctx: click.Context, metrics_port: int | None) -> None:
    """Run an agent worker that trains jobs from the queue (distributed mode)."""
    from tars.cli.foreground import run_foreground
    from tars.cli.workers import make_separate_worker
    from tars.wiring.worker import OrchestrationRefused

    settings = _settings(ctx)
    if settings.embedded:
        raise click.ClickException("a separate worker needs TARS_REDIS_URL; embedded mode runs its worker in `tars up`")
    if settings.worker_api_key is None:
        raise click.ClickException(
            "a separate worker records its runs through the orchestration service: set TARS_WORKER_API_KEY to an "
            "operator's API key (`tars apikeys create --user U --role operator`), and TARS_ORCHESTRATION_URL"
        )
    _trace(settings, "worker")
    separate = make_separate_worker(settings)
    try:
        separate.recorder.check_access()
    except OrchestrationRefused as exc:
        separate.close()
        raise click.ClickException(str(exc)) from None
    if metrics_port is not None or settings.worker_metrics_port:
        from prometheus_client import start_http_server

        metrics, _ = start_http_server(_port(metrics_port, settings.worker_metrics_port), addr=settings.host)
        click.echo(f"worker metrics listening on http://{settings.host}:{metrics.server_port}/metrics")
    families = ", ".join(settings.served_algorithms)
    click.echo(
        f"worker {settings.worker_name} taking {families} jobs from {settings.redis_url}, "
        f"reporting to {settings.orchestration_base_url}"
    )
    try:
        run_foreground([], separate.worker)
    finally:
        separate.close()


@cli.group()
def db() -> None:
    """Database schema migrations."""


@db.command("upgrade")
@click.argument("revision", default="head")
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from tars.wiring.database import schema_service

    with schema_service(_settings(ctx)) as schema:
        before = schema.current()
        schema.upgrade(revision, report=click.echo)
        click.echo(f"database at {schema.current()} (was {before or 'empty'})")


@db.command("downgrade")
@click.argument("revision")
@click.pass_context
def db_downgrade(ctx: click.Context, revision: str) -> None:
    """Revert migrations down to REVISION ('base' reverts all)."""
    from tars.wiring.database import schema_service

    with schema_service(_settings(ctx)) as schema:
        schema.downgrade(revision, report=click.echo)
        click.echo(f"database at {schema.current() or 'base'}")


@db.command("status")
@click.pass_context
def db_status(ctx: click.Context) -> None:
    """Show the current and the latest schema revision."""
    from tars.wiring.database import schema_service

    with schema_service(_settings(ctx)) as schema:
        status = schema.status()
    state = "up to date" if status.up_to_date else "needs `tars db upgrade`"
    click.echo(f"current: {status.current or 'empty'}\nhead:    {status.head}\n{state}")
    for index in status.indexes:
        click.echo(f"  index {index.name}: {'valid' if index.valid else 'INVALID (`tars db upgrade` rebuilds it)'}")


@cli.group()
def users() -> None:
    """Manage users."""


@users.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.VIEWER.value, show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input")
@click.pass_context
def users_create(ctx: click.Context, username: str, role: str, password_stdin: bool) -> None:
    """Create USERNAME; the password is asked for (or read from stdin), never given as an argument."""
    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with accounts(_settings(ctx)) as opened:
        user = opened.users.create(username, password, Role(role))
    click.echo(f"created user {user.username} ({user.role})")


cli.add_command(apikeys)
cli.add_command(dev)
cli.add_command(insights)
cli.add_command(client.login)
cli.add_command(client.train)
cli.add_command(client.cancel)
