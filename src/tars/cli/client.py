"""CLI commands that talk to a running orchestration service over HTTP."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tars.domain.runs import UNFINISHED
from tars.settings import Settings

if TYPE_CHECKING:
    import httpx

TOKEN_FILE = "token"
POLL_SECONDS = 0.5


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
        body = _request("POST", url, json={"refresh_token": self._saved["refresh_token"]})
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


def _request(method: str, url: str, credentials: Credentials | None = None, **kwargs: Any) -> Any:
    import httpx  # here, not at the top: `tars worker` and `tars up` load this module and never call out

    for attempt in range(2):
        headers = {"Authorization": f"Bearer {credentials.token}"} if credentials else {}
        try:
            response = httpx.request(method, url, headers=headers, timeout=30.0, **kwargs)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach {url}: {exc}") from exc
        if response.status_code == 401 and credentials is not None and attempt == 0 and credentials.refresh():
            continue  # the access token ran out; the login goes on with a fresh one
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
    body = _request("POST", f"{base}/api/v1/auth/login", json={"username": username, "password": password})
    save_login(_token_path(settings), base, body)
    days = body["refresh_expires_in"] // 86400
    click.echo(f"logged in as {username}; the login lasts {days} day(s) of use, renewed as needed")


@click.command()
@click.argument("agent_id")
@click.option("--env", "environment", default=None, help="Gymnasium environment (default: the agent's)")
@click.option("--episodes", type=click.IntRange(min=1), default=None, help="Stop after this many episodes")
@click.option("--timesteps", type=click.IntRange(min=1), default=None, help="Stop after this many env steps")
@click.option("--from-run", default=None, help="Continue from this run's checkpoint")
@click.option("--seed", type=click.IntRange(min=0), default=None)
@click.option("--url", default=None, help="Orchestration URL (default: from settings)")
@click.option("--token", envvar="TARS_TOKEN", default=None, help="Access token or API key (default: from `tars login`)")
@click.option("--no-wait", is_flag=True, help="Return once the run is queued")
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
    token: str | None,
    no_wait: bool,
) -> None:
    """Train AGENT_ID and follow the run until it ends."""
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
    started = _request("POST", f"{base}/api/v1/train", credentials, json=body)
    run_id = started["run_id"]
    click.echo(f"run {run_id} {started['status']}")
    if no_wait:
        return
    run = _follow(base, credentials, run_id, episodes, timesteps)
    if run["status"] != "succeeded":
        raise click.ClickException(f"run {run_id} {run['status']}: {run.get('error') or ''}".rstrip(": "))
    summary = run.get("evaluation") or {}
    click.echo(
        f"run {run_id} succeeded: {summary.get('episodes', 0)} evaluation episodes, "
        f"mean reward {summary.get('mean_reward', float('nan')):.2f} "
        f"(min {summary.get('min_reward', float('nan')):.2f}, max {summary.get('max_reward', float('nan')):.2f}), "
        f"mean length {summary.get('mean_length') or 0:.1f}"
    )


def _follow(
    base: str, credentials: Credentials, run_id: str, episodes: int | None, timesteps: int | None
) -> dict[str, Any]:
    # Progress in episodes when the run stops on them, otherwise in environment steps.
    by_episodes = episodes is not None
    with click.progressbar(length=episodes or timesteps or 1, label="training", show_pos=True) as bar:
        shown = 0
        while True:
            run: dict[str, Any] = _request("GET", f"{base}/api/v1/runs/{run_id}", credentials)
            done = min(int(run["episodes_done"] if by_episodes else run["timesteps_done"]), bar.length or 0)
            if done > shown:
                bar.update(done - shown)
                shown = done
            if run["status"] not in UNFINISHED:  # succeeded, failed, or cancelled (by anyone)
                return run
            time.sleep(POLL_SECONDS)


@click.command()
@click.argument("run_id")
@click.option("--url", default=None, help="Orchestration URL (default: from settings)")
@click.option("--token", envvar="TARS_TOKEN", default=None, help="Access token or API key (default: from `tars login`)")
@click.pass_obj
def cancel(settings: Settings, run_id: str, url: str | None, token: str | None) -> None:
    """Cancel RUN_ID: at once when queued, within a second when running."""
    base = (url or settings.orchestration_base_url).rstrip("/")
    run = _request("POST", f"{base}/api/v1/runs/{run_id}/cancel", Credentials(settings, token))
    click.echo(f"run {run_id}: {run['status']}" + (" (stopping)" if run["status"] == "running" else ""))
