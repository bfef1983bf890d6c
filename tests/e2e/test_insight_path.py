"""The insight path with the real processes, in Chromium, on both modes: evaluations POSTed in batches
through dashboard-api reach the insight engine (inside `tars up`, or `tars serve insight-engine`), whose
reward regression becomes an insight on the API and, live, on the overview's active insights and the
agent page; an operator acknowledges it on the page, and it leaves the overview by itself once rewards
recover. Nothing here hands the insight service anything: only the engine does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import Stack, log_in, same_document
from tests.waiting import eventually

AGENT, ENVIRONMENT, REGION = "ppo", "CartPole-v1", "eu-west-1"
BATCH = 50
# The playbook's post-deploy loop (upgrade-playbook-v1.0.1.md, "Smoke Test Critical Paths"), over the
# services T.A.R.S. runs: each must answer {"status":"ok","version":"v1.0.1",...}.
PLAYBOOK_SERVICES = ("dashboard-api", "orchestration", "insight-engine")
# The engine reads the feed every second and its detector needs a few dozen rewards after a change:
# seconds, but the machine is shared.
ENGINE_TIMEOUT_MS = 60_000


@pytest.fixture(params=["embedded", "distributed"])
def stack(request: pytest.FixtureRequest) -> Stack:
    if request.param == "embedded":
        embedded: Stack = request.getfixturevalue("embedded_stack")()
        return embedded
    distributed: Stack = request.getfixturevalue("distributed_stack")(workers=0)  # nothing here trains
    return distributed


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    uncaught: list[str] = []
    context.on("weberror", lambda error: uncaught.append(str(error.error)))
    yield context
    context.close()
    assert uncaught == []


def open_page(context: BrowserContext, stack: Stack, username: str, route: str = "") -> Page:
    """A tab of its own (the dashboard keeps its login per tab), logged in, on ``route``."""
    page = context.new_page()
    log_in(page, stack.dashboard_url, username, route)
    return page


def post_batches(stack: Stack, operator: dict[str, str], rewards: np.ndarray[Any, Any]) -> None:
    for start in range(0, rewards.size, BATCH):
        items = [
            {"agent_id": AGENT, "environment": ENVIRONMENT, "region": REGION, "reward": float(reward)}
            for reward in rewards[start : start + BATCH]
        ]
        response = httpx.post(
            f"{stack.dashboard_url}/api/v1/evaluations/batch", json={"items": items}, headers=operator, timeout=30
        )
        assert response.status_code == 201, response.text


def regressions(stack: Stack, viewer: dict[str, str], state: str) -> list[dict[str, Any]]:
    params = {"kind": "reward_regression", "agent_id": AGENT, "state": state}
    response = httpx.get(f"{stack.dashboard_url}/api/v1/insights", params=params, headers=viewer, timeout=10)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


def watching(stack: Stack, agent_id: str) -> bool:
    """Whether the engine has taken the agent's feed: it then reports the agent's lag."""
    metrics = httpx.get(f"{stack.insight_url}/metrics", timeout=5).text
    return f'tars_insight_feed_lag_events{{agent="{agent_id}"}}' in metrics


def test_every_service_answers_the_playbooks_health_loop(stack: Stack) -> None:
    urls = dict(zip(PLAYBOOK_SERVICES, (stack.dashboard_url, stack.orchestration_url, stack.insight_url), strict=True))
    for service, url in urls.items():
        response = httpx.get(f"{url}/health", timeout=5)
        assert response.status_code == 200, (service, response.text)
        health = response.json()
        assert (health["status"], health["version"], health["service"]) == ("ok", "v1.0.1", service), health
        assert health["region"]


@pytest.mark.browser
def test_a_regression_posted_in_batches_reaches_the_pages_and_clears_by_itself(
    stack: Stack, context: BrowserContext
) -> None:
    stack.create_user("olivia", "operator")
    stack.create_user("victor", "viewer")
    operator, viewer = stack.token("olivia"), stack.token("victor")
    eventually(lambda: watching(stack, AGENT), 60, interval=0.2, message=f"the insight engine to watch {AGENT}")
    overview = open_page(context, stack, "olivia")
    agent_page = open_page(context, stack, "victor", f"#/agents/{AGENT}")
    expect(overview.locator("#insights-empty")).to_be_visible()
    expect(agent_page.locator("#agent-insights-empty")).to_be_visible()

    rng = np.random.default_rng(11)
    post_batches(stack, operator, rng.normal(400, 40, 400))  # the baseline
    post_batches(stack, operator, rng.normal(240, 40, 200))  # a 40 % drop

    # On the API: one open reward regression, of this agent, environment and region.
    [insight] = eventually(
        lambda: regressions(stack, viewer, "open"), ENGINE_TIMEOUT_MS / 1000, interval=0.2,
        message="an open reward regression on the API",
    )  # fmt: skip
    assert (insight["agent_id"], insight["environment"], insight["region"]) == (AGENT, ENVIRONMENT, REGION)
    assert insight["severity"] == "critical", insight
    assert re.match(r"^reward \d+% below its baseline since evaluation \d+: mean 2\d\d\.\d against 4\d\d\.\d$",
                    insight["summary"]), insight  # fmt: skip

    # On the overview, live: the row says what the API says (evidence may still be growing: the row
    # follows it, so compare with the API's latest).
    row = overview.locator(f"#insights tbody tr[data-insight-id='{insight['id']}']")
    expect(row).to_have_attribute("data-state", "open")
    expect(row).to_have_attribute("data-kind", "reward_regression")
    expect(row.locator("[data-field=severity]")).to_have_text("critical")
    expect(row.locator("[data-field=kind]")).to_have_text("reward regression")
    expect(row.locator("[data-field=subject]")).to_have_text(f"{AGENT} · {ENVIRONMENT} · {REGION}")

    def summary_matches() -> tuple[str, str] | None:
        [latest] = regressions(stack, viewer, "open")
        shown = row.locator("[data-field=summary]").text_content() or ""
        return (shown, latest["summary"]) if shown == latest["summary"] else None

    eventually(summary_matches, 30, interval=0.2, message="the overview to show the API's summary")
    expect(overview.locator("#insights tbody tr")).to_have_count(1)

    # On the agent page, live: a marker on the evaluations' chart and the active insight listed.
    chart = agent_page.locator("#evaluation-chart")
    marker = chart.locator(f"svg g.marker[data-insight-id='{insight['id']}']")
    expect(marker).to_have_count(1)
    expect(marker).to_have_class(re.compile(r"\bseverity-critical\b"))
    # It began before the latest 100 evaluations the chart shows (the drop alone is 200): pinned at the start.
    expect(marker).to_have_attribute("data-x", "1")
    label = r"^critical reward regression: reward \d+% below .* — began before the evaluations shown$"
    expect(marker).to_have_attribute("aria-label", re.compile(label))
    listed = agent_page.locator(f"#agent-insights li[data-insight-id='{insight['id']}']")
    expect(listed).to_have_attribute("data-state", "open")

    # An operator acknowledges it on the overview; both pages and the API see the new state.
    row.get_by_label(f"Note on insight {insight['id']}").fill("looking into eu-west-1")
    row.get_by_role("button", name="Acknowledge").click()
    expect(row).to_have_attribute("data-state", "acknowledged")
    expect(row.locator("[data-field=state]")).to_contain_text("acknowledged by olivia")
    expect(row.locator("[data-field=state] .note")).to_have_text("looking into eu-west-1")
    expect(listed).to_have_attribute("data-state", "acknowledged")
    [acknowledged] = regressions(stack, viewer, "acknowledged")
    assert (acknowledged["id"], acknowledged["acknowledged_by"]) == (insight["id"], "olivia")

    # Rewards recover: the engine resolves it and it leaves the overview without anyone acting.
    post_batches(stack, operator, rng.normal(400, 40, 400))
    expect(row).to_have_count(0, timeout=ENGINE_TIMEOUT_MS)
    expect(overview.locator("#insights-empty")).to_be_visible()
    expect(listed).to_have_count(0)
    expect(agent_page.locator("#agent-insights-empty")).to_be_visible()
    [resolved] = regressions(stack, viewer, "resolved")
    assert resolved["id"] == insight["id"] and resolved["resolved_at"], resolved
    assert regressions(stack, viewer, "active") == []
    assert same_document(overview) and same_document(agent_page)
