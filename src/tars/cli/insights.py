"""`tars insights`: what the insight engine found, read and acted on through dashboard-api's
/api/v1/insights, as `tars cancel` acts on runs through orchestration (the same login and --token)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from tars.cli.client import Credentials, call_api
from tars.domain.insights import MAX_NOTE_LENGTH, FindingKind, Severity, StateFilter
from tars.domain.regions import REGIONS
from tars.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

MAX_PAGE = 500
SEVERITY_STYLES = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
STATE_STYLES = {"open": "bold", "acknowledged": "", "dismissed": "dim", "resolved": "green"}

url_option = click.option(
    "--url", default=None, help="dashboard-api URL (default: TARS_DASHBOARD_URL, or its port here)"
)
token_option = click.option(
    "--token", envvar="TARS_TOKEN", default=None, help="Access token or API key (default: from `tars login`)"
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON and nothing else")


def _base(settings: Settings, url: str | None) -> str:
    return (url or settings.dashboard_base_url).rstrip("/") + "/api/v1/insights"


def _console() -> Console:
    from rich.console import Console  # here, not at the top: rich loads for these commands alone

    return Console(highlight=False)


@click.group()
def insights() -> None:
    """What the insight engine found: regressions, anomalies and stalls, with evidence."""


@insights.command("list")
@click.option(
    "--state", type=click.Choice([s.value for s in StateFilter]), default=None, help="active: open and acknowledged"
)
@click.option("--kind", type=click.Choice([k.value for k in FindingKind]), default=None)
@click.option("--severity", type=click.Choice([s.value for s in Severity]), default=None)
@click.option("--agent", "agent_id", default=None, help="Only this agent's")
@click.option("--env", "environment", default=None, help="Only this environment's")
@click.option("--region", type=click.Choice(REGIONS), default=None)
@click.option("--run", "run_id", default=None, help="Only those about this run")
@click.option("--since", default=None, help="First seen at or after (ISO 8601 with a time zone)")
@click.option("--until", default=None, help="First seen before (ISO 8601 with a time zone)")
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=50, show_default=True)
@click.option("--cursor", default=None, help="Continue from the next_cursor a page ended with")
@url_option
@token_option
@json_option
@click.pass_obj
def list_insights(settings: Settings, /, url: str | None, token: str | None, as_json: bool, **filters: Any) -> None:
    """List insights, newest first (by when their condition began)."""
    params = {name: value for name, value in filters.items() if value is not None}
    page = call_api("GET", _base(settings, url), Credentials(settings, token), params=params)
    if as_json:
        click.echo(json.dumps(page))
        return
    console = _console()
    console.print(insight_table(page["items"]))
    if page["next_cursor"]:
        console.print(f"more: --cursor {page['next_cursor']}", style="dim", soft_wrap=True)


@insights.command("show")
@click.argument("insight_id", type=click.IntRange(min=1))
@url_option
@token_option
@json_option
@click.pass_obj
def show(settings: Settings, insight_id: int, url: str | None, token: str | None, as_json: bool) -> None:
    """Show one insight: its evidence and what to do about it."""
    insight = call_api("GET", f"{_base(settings, url)}/{insight_id}", Credentials(settings, token))
    if as_json:
        click.echo(json.dumps(insight))
        return
    _console().print(insight_detail(insight))


note_option = click.option("--note", default=None, help=f"Why (at most {MAX_NOTE_LENGTH} characters; audit-logged)")


@insights.command("ack")
@click.argument("insight_id", type=click.IntRange(min=1))
@note_option
@url_option
@token_option
@json_option
@click.pass_obj
def acknowledge(
    settings: Settings, insight_id: int, note: str | None, url: str | None, token: str | None, as_json: bool
) -> None:
    """Acknowledge INSIGHT_ID: someone is on it (it stays active until its condition clears)."""
    _decide(settings, insight_id, "acknowledge", note, url, token, as_json)


@insights.command("dismiss")
@click.argument("insight_id", type=click.IntRange(min=1))
@note_option
@url_option
@token_option
@json_option
@click.pass_obj
def dismiss(
    settings: Settings, insight_id: int, note: str | None, url: str | None, token: str | None, as_json: bool
) -> None:
    """Dismiss INSIGHT_ID: not worth attention (not opened again until its condition clears)."""
    _decide(settings, insight_id, "dismiss", note, url, token, as_json)


def _decide(
    settings: Settings,
    insight_id: int,
    action: str,
    note: str | None,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    body = {"note": note} if note is not None else None
    insight = call_api("POST", f"{_base(settings, url)}/{insight_id}/{action}", Credentials(settings, token), json=body)
    if as_json:
        click.echo(json.dumps(insight))
        return
    by = insight["acknowledged_by"] if action == "acknowledge" else insight["dismissed_by"]
    click.echo(f"insight {insight_id} ({insight['kind']}, {_subject(insight)}): {insight['state']} by {by}")


# rendering


def _subject(insight: dict[str, Any]) -> str:
    parts = [insight["agent_id"], insight["environment"], insight["region"]]
    text = " / ".join(part for part in parts if part)
    return text + (f" run {insight['run_id']}" if insight["run_id"] else "")


def _moment(value: str | None) -> str:
    """An API time as a person reads it: to the second, in UTC."""
    return value[:19].replace("T", " ") if value else "-"


def insight_table(items: list[dict[str, Any]]) -> Table:
    """Insights as a table, one a row (a terminal's width: long summaries wrap)."""
    from rich.box import SIMPLE_HEAD
    from rich.table import Table
    from rich.text import Text

    # Columns apart by spaces alone: rows read (and grep) as lines.
    table = Table(box=SIMPLE_HEAD, show_edge=False, pad_edge=False, caption=None if items else "no insights")
    for column in ("id", "severity", "state", "kind", "subject", "first seen (UTC)", "last seen (UTC)", "summary"):
        table.add_column(column, justify="right" if column == "id" else "left", overflow="fold")
    for item in items:
        table.add_row(
            str(item["id"]),
            Text(item["severity"], style=SEVERITY_STYLES.get(item["severity"], "")),
            Text(item["state"], style=STATE_STYLES.get(item["state"], "")),
            item["kind"],
            Text(_subject(item)),
            _moment(item["first_seen_at"]),
            _moment(item["last_seen_at"]),
            Text(item["summary"]),
        )
    return table


def insight_detail(insight: dict[str, Any]) -> Table:
    """One insight, a field a line, its evidence last."""
    from rich.table import Table
    from rich.text import Text

    recommendation = insight["recommendation"]
    parameters = ", ".join(f"{name}={_number(value)}" for name, value in recommendation["parameters"].items())
    rows: list[tuple[str, str, str]] = [
        ("insight", f"{insight['id']}: {insight['kind']}", ""),
        ("severity", insight["severity"], SEVERITY_STYLES.get(insight["severity"], "")),
        ("state", insight["state"], STATE_STYLES.get(insight["state"], "")),
        ("subject", _subject(insight), ""),
        ("summary", insight["summary"], ""),
        ("first seen", _moment(insight["first_seen_at"]), ""),
        ("last seen", _moment(insight["last_seen_at"]), ""),
        ("confidence", _number(insight["confidence"]), ""),
        ("impact", _number(insight["impact"]), ""),
        ("recommendation", recommendation["action"] + (f" ({parameters})" if parameters else ""), "bold"),
        ("why", recommendation["reason"], ""),
    ]
    if insight["resolved_at"]:
        rows.append(("resolved", f"{_moment(insight['resolved_at'])}: {insight['resolution'] or ''}", ""))
    if insight["acknowledged_by"]:
        rows.append(("acknowledged", f"{_moment(insight['acknowledged_at'])} by {insight['acknowledged_by']}", ""))
    if insight["dismissed_by"]:
        rows.append(("dismissed", f"{_moment(insight['dismissed_at'])} by {insight['dismissed_by']}", ""))
    if insight["note"]:
        rows.append(("note", insight["note"], ""))
    rows.append(("evidence", "", ""))
    for name, value in insight["evidence"].items():
        shown = ", ".join(f"{k}={_number(v)}" for k, v in value.items()) if isinstance(value, dict) else _number(value)
        rows.append((f"  {name}", shown, ""))
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value, style in rows:
        table.add_row(name, Text(value, style=style))  # Text: what a detector or an operator wrote is not markup
    return table


def _number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)
