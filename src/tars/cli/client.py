"""CLI commands that talk to a running orchestration service over HTTP."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tars.settings import Settings

if TYPE_CHECKING:
    import httpx

TOKEN_FILE = "token"


def _token_path(settings: Settings) -> Path:
    return settings.data_dir / TOKEN_FILE


class Credentials:
    """The bearer credential for a command: ``--token``/``TARS_TOKEN`` (an access token or an API
    key) as given, or the login kept by `tars login`, refreshed when its access token runs out."""

    def __init__(self, settings: Settings, token: str | None) -> None:
        self._path = _token_path(settings)
        self._saved: dict[str, str] | None = None
        if token:
            self.token = token
            return
        if not self._path.exists():
            raise click.ClickException("not logged in: run `tars login -u NAME` or pass --token")
        try:
            self._saved = json.loads(self._path.read_text())
            self.token = self._saved["access_token"]
        except (ValueError, KeyError, TypeError):
            raise click.ClickException("the saved login is unreadable: run `tars login -u NAME` again") from None

    def refresh(self) -> bool:
        """Exchange the saved refresh token for a new pair; False when there is nothing to refresh."""
        if self._saved is None or "refresh_token" not in self._saved:
            return False
        url = f"{self._saved['url']}/api/v1/auth/refresh"
        body = call_api("POST", url, json={"refresh_token": self._saved["refresh_token"]})
        save_login(self._path, self._saved["url"], body)
        self._saved = json.loads(self._path.read_text())
        self.token = body["access_token"]
        return True


def save_login(path: Path, url: str, body: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "access_token": body["access_token"], "refresh_token": body["refresh_token"]}, handle)


def _error_text(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text
    if isinstance(detail, list):
        detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail)
    return f"{response.status_code}: {detail}"


class NoAnswer(click.ClickException):
    """The service could not be reached, or said it cannot answer now (5xx): worth asking again later."""


def call_api(
    method: str, url: str, credentials: Credentials | None = None, *, timeout: float = 30.0, **kwargs: Any
) -> Any:
    """The JSON a service answers (a 4xx as a ClickException naming what is wrong, a 5xx or no
    answer as NoAnswer), the login refreshed once if its access token ran out."""
    import httpx  # here, not at the top: `tars worker` and `tars up` load this module and never call out

    for attempt in range(2):
        headers = {"Authorization": f"Bearer {credentials.token}"} if credentials else {}
        try:
            response = httpx.request(method, url, headers=headers, timeout=timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise NoAnswer(f"cannot reach {url}: {exc}") from exc
        if response.status_code == 401 and credentials is not None and attempt == 0 and credentials.refresh():
            continue  # the access token ran out; the login goes on with a fresh one
        if response.status_code >= 500:
            raise NoAnswer(_error_text(response))
        if response.status_code >= 400:
            raise click.ClickException(_error_text(response))
        return response.json()
    raise AssertionError("unreachable")


@click.command()
@click.option("--username", "-u", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input")
@click.option("--url", default=None, help="Orchestration URL (default: from settings)")
@click.pass_obj
def login(settings: Settings, username: str, password_stdin: bool, url: str | None) -> None:
    """Log in and keep the token for later commands."""
    if password_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True)
    base = (url or settings.orchestration_base_url).rstrip("/")
    body = call_api("POST", f"{base}/api/v1/auth/login", json={"username": username, "password": password})
    save_login(_token_path(settings), base, body)
    days = body["refresh_expires_in"] // 86400
    click.echo(f"logged in as {username}; the login lasts {days} day(s) of use, renewed as needed")


# How long `tars train` reads a run record before counting the service as not answering.
READ_TIMEOUT_SECONDS = 10.0


@click.command()
@click.argument("agent_id")
@click.option("--env", "environment", default=None, help="Gymnasium environment (default: the agent's)")
@click.option("--episodes", type=click.IntRange(min=1), default=None, help="Stop after this many episodes")
@click.option("--timesteps", type=click.IntRange(min=1), default=None, help="Stop after this many env steps")
@click.option("--from-run", default=None, help="Continue from this run's checkpoint")
@click.option("--seed", type=click.IntRange(min=0), default=None)
@click.option("--url", default=None, help="Orchestration URL (default: from settings)")
@click.option(
    "--dashboard-url",
    default=None,
    help="dashboard-api URL, whose live feed (/ws) the run is followed on (default: TARS_DASHBOARD_URL, or the "
    "dashboard port on this host)",
)
@click.option("--token", envvar="TARS_TOKEN", default=None, help="Access token or API key (default: from `tars login`)")
@click.option("--no-wait", is_flag=True, help="Return once the run is queued")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the final run record as one JSON object on stdout, and nothing else (no progress)",
)
@click.option(
    "--give-up-after",
    type=click.FloatRange(min=0, min_open=True),
    default=120.0,
    show_default=True,
    help="Seconds without the live feed or an answer from the orchestration service before giving up (exit 3)",
)
@click.pass_obj
def train(
    settings: Settings,
    agent_id: str,
    environment: str | None,
    episodes: int | None,
    timesteps: int | None,
    from_run: str | None,
    seed: int | None,
    url: str | None,
    dashboard_url: str | None,
    token: str | None,
    no_wait: bool,
    as_json: bool,
    give_up_after: float,
) -> None:
    """Train AGENT_ID and follow the run until it ends.

    On a terminal, a live progress bar (fed by the dashboard's live feed) and a result line;
    otherwise a few plain lines; with --json, the final run record alone.

    \b
    Exit status:
      0  the run succeeded
      1  it failed or was cancelled (or was refused)
      3  it could not be followed to its end: neither the live feed nor the orchestration
         service answered for --give-up-after seconds, or they refused the credentials;
         the run may still be going on
    """
    base = (url or settings.orchestration_base_url).rstrip("/")
    credentials = Credentials(settings, token)
    if episodes is None and timesteps is None:
        episodes = 10
    body: dict[str, Any] = {"agent_id": agent_id}
    for key, value in (("episodes", episodes), ("timesteps", timesteps), ("from_run", from_run)):
        if value is not None:
            body[key] = value
    if environment:
        body["environment"] = environment
    if seed is not None:
        body["seed"] = seed
    started = call_api("POST", f"{base}/api/v1/train", credentials, json=body)
    run_id = started["run_id"]

    def read_run() -> dict[str, Any]:
        run: dict[str, Any] = call_api("GET", f"{base}/api/v1/runs/{run_id}", credentials, timeout=READ_TIMEOUT_SECONDS)
        return run

    if not as_json:
        click.echo(f"run {run_id} {started['status']}")
    if no_wait:
        if as_json:
            from tars.cli.following import run_summary

            click.echo(json.dumps(run_summary(read_run())))
        return
    feed = (dashboard_url or settings.dashboard_base_url).rstrip("/")
    run = _follow(run_id, episodes, timesteps, feed, credentials, read_run, give_up_after, as_json)
    from tars.cli.following import result_line, run_summary

    if as_json:
        click.echo(json.dumps(run_summary(run)))
    else:
        click.echo(result_line(run), err=run["status"] != "succeeded")
    if run["status"] != "succeeded":
        sys.exit(1)


def _follow(
    run_id: str,
    episodes: int | None,
    timesteps: int | None,
    dashboard: str,
    credentials: Credentials,
    read_run: Callable[[], dict[str, Any]],
    give_up_after: float,
    as_json: bool,
) -> dict[str, Any]:
    # Here, not at the top: rich and websockets load for `tars train` alone.
    import asyncio

    from rich.console import Console

    from tars.cli.following import PlainView, Progress, RunFollower, SilentView, TerminalView, View

    console = Console(highlight=False)
    view: View = SilentView() if as_json else TerminalView(console) if console.is_interactive else PlainView()
    progress = Progress(run_id, episodes=episodes, timesteps=timesteps)
    feed_url = ("ws" + dashboard.removeprefix("http") if dashboard.startswith("http") else dashboard) + "/ws"
    follower = RunFollower(progress, view, feed_url, credentials, read_run, give_up_after)
    view.update(progress)
    try:
        return asyncio.run(follower.follow())
    except KeyboardInterrupt:
        pass
    finally:
        view.close()
    click.echo(f"stopped following run {run_id}; it goes on (`tars cancel {run_id}` stops it)", err=True)
    sys.exit(130)


@click.command()
@click.argument("run_id")
@click.option("--url", default=None, help="Orchestration URL (default: from settings)")
@click.option("--token", envvar="TARS_TOKEN", default=None, help="Access token or API key (default: from `tars login`)")
@click.pass_obj
def cancel(settings: Settings, run_id: str, url: str | None, token: str | None) -> None:
    """Cancel RUN_ID: at once when queued, within a second when running."""
    base = (url or settings.orchestration_base_url).rstrip("/")
    run = call_api("POST", f"{base}/api/v1/runs/{run_id}/cancel", Credentials(settings, token))
    click.echo(f"run {run_id}: {run['status']}" + (" (stopping)" if run["status"] == "running" else ""))
