"""CLI commands that talk to a running orchestration service over HTTP."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import click
import httpx

from tars.settings import Settings

TOKEN_FILE = "token"
POLL_SECONDS = 0.5


def _token_path(settings: Settings) -> Path:
    return settings.data_dir / TOKEN_FILE


def _error_text(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text
    if isinstance(detail, list):
        detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail)
    return f"{response.status_code}: {detail}"


def _request(method: str, url: str, token: str | None = None, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.request(method, url, headers=headers, timeout=30.0, **kwargs)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from exc
    if response.status_code >= 400:
        raise click.ClickException(_error_text(response))
    return response.json()


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
    path = _token_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(body["access_token"])
    click.echo(f"logged in as {username}; token valid for {body['expires_in']} s")


@click.command()
@click.argument("agent_id")
@click.option("--env", "environment", default=None, help="Gymnasium environment (default: the agent's)")
@click.option("--episodes", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=None)
@click.option("--url", default=None, help="Orchestration URL (default: from settings)")
@click.option("--token", envvar="TARS_TOKEN", default=None, help="Bearer token (default: from `tars login`)")
@click.option("--no-wait", is_flag=True, help="Return once the run is queued")
@click.pass_obj
def train(
    settings: Settings,
    agent_id: str,
    environment: str | None,
    episodes: int,
    seed: int | None,
    url: str | None,
    token: str | None,
    no_wait: bool,
) -> None:
    """Train AGENT_ID and follow the run until it ends."""
    base = (url or settings.orchestration_base_url).rstrip("/")
    if token is None:
        path = _token_path(settings)
        if not path.exists():
            raise click.ClickException("not logged in: run `tars login -u NAME` or pass --token")
        token = path.read_text().strip()
    body: dict[str, Any] = {"agent_id": agent_id, "episodes": episodes}
    if environment:
        body["environment"] = environment
    if seed is not None:
        body["seed"] = seed
    started = _request("POST", f"{base}/api/v1/train", token, json=body)
    run_id = started["run_id"]
    click.echo(f"run {run_id} {started['status']}")
    if no_wait:
        return
    run = _follow(base, token, run_id, episodes)
    if run["status"] == "failed":
        raise click.ClickException(f"run {run_id} failed: {run.get('error')}")
    summary = run.get("evaluation") or {}
    click.echo(
        f"run {run_id} succeeded: {summary.get('episodes', 0)} evaluation episodes, "
        f"mean reward {summary.get('mean_reward', float('nan')):.2f} "
        f"(min {summary.get('min_reward', float('nan')):.2f}, max {summary.get('max_reward', float('nan')):.2f}), "
        f"mean length {summary.get('mean_length') or 0:.1f}"
    )


def _follow(base: str, token: str, run_id: str, episodes: int) -> dict[str, Any]:
    with click.progressbar(length=episodes, label="training", show_pos=True) as bar:
        shown = 0
        while True:
            run: dict[str, Any] = _request("GET", f"{base}/api/v1/runs/{run_id}", token)
            done = int(run["episodes_done"])
            if done > shown:
                bar.update(done - shown)
                shown = done
            if run["status"] in ("succeeded", "failed"):
                return run
            time.sleep(POLL_SECONDS)
