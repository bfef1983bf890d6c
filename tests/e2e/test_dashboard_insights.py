"""Insights on the web page, in Chromium: the overview's active insights and the agent page's markers,
arriving live from a real dashboard-api as the insight service opens, updates and resolves them.

The server is dashboard-api on a real port in this process, on the test's runtime, so that the test
can hand the insight service observations as the engine does (`runtime.insights.apply`), on both
backends: in-process events when embedded, Redis when distributed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tars.api.applications import create_dashboard_app
from tars.domain.insights import FindingKind, FindingState, Insight, Observation, Severity
from tars.services.runtime import Runtime
from tests.conftest import SEEDED_USERS, AppServer
from tests.e2e.conftest import harness_page, log_in, same_document
from tests.insight_records import observation, resolved

OPERATOR = SEEDED_USERS["operator"]
VIEWER = SEEDED_USERS["viewer"]


@pytest.fixture
def server(runtime: Runtime) -> Iterator[str]:
    served = AppServer(lambda: create_dashboard_app(runtime))
    served.start()
    yield f"http://127.0.0.1:{served.port}"
    served.stop()


def row(page: Page, insight: Insight) -> Any:
    return page.locator(f"#insights tbody tr[data-insight-id='{insight.id}']")


@pytest.mark.browser
def test_insights_arrive_live_on_the_overview_and_an_operator_acts_on_them(
    runtime: Runtime, server: str, page: Page, auth: dict[str, dict[str, str]]
) -> None:
    log_in(page, server, OPERATOR)
    expect(page.locator("#insights-empty")).to_be_visible()
    expect(page.locator("#insights th.actions")).to_be_visible()

    regression = observation(severity=Severity.CRITICAL, first=1, last=5, summary="reward fell 35 % in eu-west-1")
    spike = observation(
        kind=FindingKind.FAILURE_RATE_SPIKE, agent_id="dqn", region="us-east-1", first=2, last=5, drop=0.12,
        summary="12 % of evaluations fail",
    )  # fmt: skip
    [ppo, dqn] = runtime.insights.apply([regression, spike])

    # Newest first, by when the condition began.
    rows = page.locator("#insights tbody tr")
    expect(rows).to_have_count(2)
    assert page.eval_on_selector_all("#insights tbody tr", "rows => rows.map(r => Number(r.dataset.insightId))") == [
        dqn.id,
        ppo.id,
    ]
    expect(page.locator("#insights-empty")).to_be_hidden()
    expect(page.locator("#insights-count")).to_have_text("(2)")
    shown = row(page, ppo)
    expect(shown).to_have_attribute("data-state", "open")
    expect(shown.locator("[data-field=severity]")).to_have_text("critical")
    expect(shown.locator("[data-field=kind]")).to_have_text("reward regression")
    expect(shown.locator("[data-field=subject]")).to_have_text("ppo · CartPole-v1 · eu-west-1")
    expect(shown.locator("[data-field=summary]")).to_have_text("reward fell 35 % in eu-west-1")
    first_seen = shown.locator("[data-field=first-seen] time")
    expect(first_seen).to_have_attribute("datetime", re.compile(r"^2026-03-01T12:01"))
    expect(shown.locator("[data-field=confidence]")).to_have_text("confidence 99.9 %")
    expect(shown.locator("[data-field=impact]")).to_have_text("20 % below baseline")
    expect(shown.locator("[data-field=recommendation]")).to_have_text(
        "Roll back (run id r-1): a new model is the likeliest cause"
    )
    expect(row(page, dqn).locator("[data-field=impact]")).to_have_text("+12 points failing")

    # Evidence grows: the same row changes in place.
    runtime.insights.apply([observation(**spike_args(), severity=Severity.CRITICAL, last=8, drop=0.3)])
    expect(row(page, dqn).locator("[data-field=severity]")).to_have_text("critical")
    expect(row(page, dqn).locator("[data-field=impact]")).to_have_text("+30 points failing")

    # An operator acknowledges one, with a note: it stays, marked, and the API agrees.
    shown.get_by_label(f"Note on insight {ppo.id}").fill("rolling back")
    shown.get_by_role("button", name="Acknowledge").click()
    expect(shown).to_have_attribute("data-state", "acknowledged")
    expect(shown.locator("[data-field=state]")).to_contain_text(f"acknowledged by {OPERATOR}")
    expect(shown.locator("[data-field=state] .note")).to_have_text("rolling back")
    expect(shown.get_by_role("status")).to_have_text("Acknowledged.")
    expect(shown.get_by_label(f"Note on insight {ppo.id}")).to_have_value("")
    answer = httpx.get(f"{server}/api/v1/insights/{ppo.id}", headers=auth["viewer"], timeout=10).json()
    assert (answer["state"], answer["acknowledged_by"], answer["note"]) == ("acknowledged", OPERATOR, "rolling back")

    # Its condition clears: it leaves the list.
    runtime.insights.apply([resolved(regression, last=9)])
    expect(shown).to_have_count(0)
    expect(rows).to_have_count(1)

    # Dismissed: it leaves too, and the list says there is nothing left.
    row(page, dqn).get_by_role("button", name="Dismiss").click()
    expect(rows).to_have_count(0)
    expect(page.locator("#insights-empty")).to_be_visible()
    assert runtime.insights.get(dqn.id).state == "dismissed"
    assert same_document(page)


def spike_args() -> dict[str, Any]:
    return {"kind": FindingKind.FAILURE_RATE_SPIKE, "agent_id": "dqn", "region": "us-east-1", "first": 2}


@pytest.mark.browser
@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_a_viewer_reads_insights_but_gets_no_buttons(runtime: Runtime, server: str, page: Page) -> None:
    [before] = runtime.insights.apply([observation(severity=Severity.WARNING, first=1, last=2)])
    log_in(page, server, VIEWER)
    expect(page.locator("#role")).to_have_text("viewer")
    expect(row(page, before)).to_have_attribute("data-severity", "warning")
    stall = observation(kind=FindingKind.LEARNING_STALL, severity=Severity.INFO, last=3, drop=250)
    [after] = runtime.insights.apply([stall])
    expect(row(page, after).locator("[data-field=impact]")).to_have_text("250 episodes without progress")
    expect(page.locator("#insights tbody tr")).to_have_count(2)
    expect(page.locator("#insights th.actions")).to_be_hidden()
    expect(page.locator("#insights").get_by_role("button")).to_have_count(0)
    expect(page.locator("#insights").get_by_role("textbox")).to_have_count(0)


def store_evaluations(server: str, headers: dict[str, str], rewards: list[float]) -> list[dict[str, Any]]:
    stored = []
    for reward in rewards:
        body = {"agent_id": "ppo", "environment": "CartPole-v1", "region": "eu-west-1", "reward": reward}
        response = httpx.post(f"{server}/api/v1/evaluations", json=body, headers=headers, timeout=10)
        assert response.status_code == 201, response.text
        stored.append(response.json())
    return stored


def began_at(seen: Observation, evaluation: dict[str, Any], latest: dict[str, Any]) -> Observation:
    """The observation dated as the engine dates it: by the evaluations where it began and was last seen."""
    first = datetime.fromisoformat(evaluation["created_at"])
    return replace(seen, first_seen_at=first, last_seen_at=datetime.fromisoformat(latest["created_at"]))


@pytest.mark.browser
def test_the_agent_page_marks_where_an_insight_began_live(
    runtime: Runtime, server: str, page: Page, auth: dict[str, dict[str, str]]
) -> None:
    evaluations = store_evaluations(server, auth["operator"], [480, 490, 200, 150, 170])
    log_in(page, server, VIEWER, "#/agents/ppo")
    chart = page.locator("#evaluation-chart")
    expect(chart).to_have_attribute("data-points", "5")
    expect(chart).to_have_attribute("data-markers", "0")
    expect(page.locator("#agent-insights-empty")).to_be_visible()

    seen = observation(severity=Severity.CRITICAL, summary="reward fell 65 %")
    regression = began_at(seen, evaluations[2], evaluations[4])
    [insight] = runtime.insights.apply([regression])
    # Another agent's insight is not this page's.
    runtime.insights.apply([observation(agent_id="dqn", kind=FindingKind.ENTROPY_COLLAPSE)])

    marker = chart.locator(f"svg g.marker[data-insight-id='{insight.id}']")
    expect(marker).to_have_count(1)
    expect(chart).to_have_attribute("data-markers", "1")
    expect(marker).to_have_attribute("data-x", "3")  # the third evaluation, where it began
    expect(marker).to_have_class(re.compile(r"\bseverity-critical\b"))
    expect(marker).to_have_attribute("role", "img")
    label = re.compile(r"^critical reward regression: reward fell 65 % \(since ")
    expect(marker).to_have_attribute("aria-label", label)
    expect(marker.locator("title")).to_have_text(re.compile(r"reward regression: reward fell 65 %"))
    listed = page.locator(f"#agent-insights li[data-insight-id='{insight.id}']")
    expect(listed).to_contain_text("reward regression")

    # Resolved: the flag stays where it began, faded; the list of active ones empties.
    cleared = replace(regression.finding, state=FindingState.RESOLVED, summary="reward back to its baseline")
    later = regression.last_seen_at + timedelta(seconds=1)
    runtime.insights.apply([Observation(cleared, regression.first_seen_at, later)])
    expect(marker).to_have_class(re.compile(r"\bstate-resolved\b"))
    expect(listed).to_have_count(0)
    expect(page.locator("#agent-insights-empty")).to_be_visible()
    assert same_document(page)

    # Loaded from REST too, as a page opened later sees it.
    page.reload()
    expect(page.locator("#connection")).to_have_text("connected")
    expect(chart.locator(f"svg g.marker[data-insight-id='{insight.id}']")).to_have_attribute("data-x", "3")


MARKERS_HARNESS = """<!doctype html>
<script type="module">
import * as insights from "/static/insights.js";
window.insights = insights;
</script>
"""


@pytest.fixture
def modules(browser: Browser) -> Iterator[Page]:
    with harness_page(browser, MARKERS_HARNESS) as page:
        yield page


@pytest.mark.browser
def test_markers_sit_at_the_evaluation_where_an_insight_began_or_pinned_while_active(modules: Page) -> None:
    markers = modules.evaluate(
        """(() => {
          const at = (minute) => `2026-03-01T12:${String(minute).padStart(2, "0")}:00.000000Z`;
          const evaluations = [10, 20, 30, 40].map((minute) => ({ created_at: at(minute) }));
          const insight = (id, minute, state) => ({
            id, state, severity: "warning", kind: "reward_regression", summary: "s", first_seen_at: at(minute),
          });
          return window.insights.evaluationMarkers(
            [insight(1, 20, "open"), insight(2, 25, "resolved"), insight(3, 5, "acknowledged"),
             insight(4, 5, "resolved"), insight(5, 50, "open"), insight(6, 10, "dismissed")],
            evaluations,
          ).map((marker) => [marker.attributes["data-insight-id"], marker.x, marker.label.split(" — ")[1] || ""]);
        })()"""
    )
    assert markers == [
        [1, 2, ""],  # at the evaluation it began with
        [2, 2.5, ""],  # between two, by time
        [3, 1, "began before the evaluations shown"],  # active: pinned at the nearer end
        [5, 4, "began after the latest evaluation shown"],
        [6, 1, ""],  # at the oldest evaluation exactly
    ]  # 4, resolved and outside the evaluations shown, is left out
    assert modules.evaluate("window.insights.evaluationMarkers([{first_seen_at: '2026-03-01T12:00:00Z'}], [])") == []
