"""`tars insights list|show|ack|dismiss` against a real dashboard-api, on both backends."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from tars.api.applications import create_dashboard_app
from tars.cli.insights import insight_detail, insight_table
from tars.cli.main import cli
from tars.domain.insights import FindingKind, Insight, Severity
from tars.services.insights import insight_data
from tars.services.runtime import Runtime
from tests.conftest import TEST_SECRET, AppServer
from tests.insight_records import observation, resolved

Run = Callable[..., tuple[int, str]]


@pytest.fixture
def server(runtime: Runtime) -> Iterator[AppServer]:
    served = AppServer(lambda: create_dashboard_app(runtime))
    served.start()
    yield served
    served.stop()


@pytest.fixture
def tars(server: AppServer, auth: dict[str, dict[str, str]], tmp_path: Path) -> Callable[..., tuple[int, str]]:
    """`tars ...` as ``role`` would run it against the server (a token each, as TARS_TOKEN would give)."""
    runner = CliRunner()
    env = {"TARS_DATA_DIR": str(tmp_path / "cli"), "TARS_JWT_SECRET": TEST_SECRET, "COLUMNS": "200"}

    def invoke(*args: str, role: str = "operator") -> tuple[int, str]:
        token = auth[role]["Authorization"].removeprefix("Bearer ")
        options = ["--url", f"http://127.0.0.1:{server.port}", "--token", token]
        result = runner.invoke(cli, [*args, *options], env=env, catch_exceptions=False)
        return result.exit_code, result.output

    return invoke


@pytest.fixture
def two(runtime: Runtime) -> list[Insight]:
    return runtime.insights.apply(
        [
            observation(severity=Severity.CRITICAL, first=1, last=2, summary="reward fell 35 % in eu-west-1"),
            observation(kind=FindingKind.FAILURE_RATE_SPIKE, agent_id="a2c", region="us-east-1", first=2, last=3),
        ]
    )


def test_list_prints_a_table_or_the_api_json(tars: Run, two: list[Insight]) -> None:
    code, out = tars("insights", "list", "--json", role="viewer")
    assert code == 0
    page = json.loads(out)
    assert [item["id"] for item in page["items"]] == [two[1].id, two[0].id] and page["next_cursor"] is None
    assert page["items"][1] == insight_data(two[0])
    code, out = tars("insights", "list", "--kind", "reward_regression", "--state", "active", "--json")
    assert code == 0 and [item["id"] for item in json.loads(out)["items"]] == [two[0].id]
    code, out = tars("insights", "list", role="viewer")
    assert code == 0
    lines = out.splitlines()
    row = next(line for line in lines if "reward_regression" in line)
    assert row.split()[:3] == [str(two[0].id), "critical", "open"]
    assert "ppo / CartPole-v1 / eu-west-1" in row and "2026-03-01 12:01:00" in row
    assert "reward fell 35 % in eu-west-1" in out and "failure_rate_spike" in out
    code, out = tars("insights", "list", "--limit", "1")
    assert code == 0 and "more: --cursor " in out
    cursor = out.rsplit("--cursor ", 1)[1].strip()
    code, out = tars("insights", "list", "--limit", "1", "--cursor", cursor, "--json")
    assert [item["id"] for item in json.loads(out)["items"]] == [two[0].id]
    code, out = tars("insights", "list", "--agent", "nobody")
    assert code == 0 and "no insights" in out


def test_list_refuses_bad_filters(tars: Run, two: list[Insight]) -> None:
    code, out = tars("insights", "list", "--kind", "bad_vibes")
    assert code == 2 and "bad_vibes" in out
    code, out = tars("insights", "list", "--since", "2026-01-01T00:00:00")
    assert code == 1 and "since" in out and "time zone" in out
    code, out = tars("insights", "list", "--limit", "501")
    assert code == 2


def test_show_prints_the_evidence_and_the_recommendation(tars: Run, two: list[Insight]) -> None:
    code, out = tars("insights", "show", str(two[0].id), role="viewer")
    assert code == 0
    assert "reward fell 35 % in eu-west-1" in out and "rollback (run_id=r-1)" in out
    assert "relative_drop" in out and "n=200, mean=480" in out
    code, out = tars("insights", "show", str(two[0].id), "--json")
    assert code == 0 and json.loads(out) == insight_data(two[0])
    code, out = tars("insights", "show", "999999")
    assert code == 1 and "404" in out


def test_ack_and_dismiss_act_as_the_caller(tars: Run, two: list[Insight], runtime: Runtime) -> None:
    first, second = two
    code, out = tars("insights", "ack", str(first.id), role="viewer")
    assert code == 1 and "403" in out and "operator" in out
    code, out = tars("insights", "ack", str(first.id), "--note", "rolling back")
    assert code == 0 and out.strip() == (
        f"insight {first.id} (reward_regression, ppo / CartPole-v1 / eu-west-1): acknowledged by operator-user"
    )
    assert runtime.insights.get(first.id).note == "rolling back"
    code, out = tars("insights", "dismiss", str(second.id), "--json", role="admin")
    assert code == 0 and json.loads(out)["state"] == "dismissed" and json.loads(out)["dismissed_by"] == "admin-user"
    code, out = tars("insights", "ack", str(first.id), "--note", "x" * 501)
    assert code == 1 and "note" in out
    runtime.insights.apply([resolved(observation(severity=Severity.CRITICAL), last=10)])
    code, out = tars("insights", "dismiss", str(first.id))
    assert code == 1 and "409" in out and "resolved" in out


def test_a_terminal_gets_colours_and_a_detector_s_text_is_never_markup(runtime: Runtime) -> None:
    [insight] = runtime.insights.apply([observation(summary="[bold]not markup[/bold]", method="[red]x")])
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=200, color_system="standard")
    console.print(insight_table([insight_data(insight)]))
    console.print(insight_detail(insight_data(insight)))
    shown = screen.getvalue()
    assert "\x1b[" in shown  # styled for a terminal
    assert shown.count("[bold]not markup[/bold]") == 2 and "[red]x" in shown
