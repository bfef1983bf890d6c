"""The dashboard's pages against a real `tars up`: roles, the agent page and the evaluations explorer."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Stack, log_in

EVALUATION_EPISODES = 3  # TARS_EVALUATION_EPISODES in the stack's environment


@pytest.fixture
def stack(embedded_stack: Callable[..., Stack]) -> Stack:
    stack = embedded_stack()
    stack.create_user("olivia", "operator")
    stack.create_user("victor", "viewer")
    return stack


def shown_ids(page: Page, table: str) -> list[int]:
    return page.eval_on_selector_all(f"{table} tbody tr", "rows => rows.map(row => Number(row.dataset.evaluationId))")


def submit_evaluation(stack: Stack, headers: dict[str, str], **body: Any) -> int:
    response = httpx.post(f"{stack.dashboard_url}/api/v1/evaluations", json=body, headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


@pytest.mark.browser
def test_a_viewer_watches_but_gets_no_training_form(stack: Stack, page: Page) -> None:
    log_in(page, stack.dashboard_url, "victor")
    expect(page.locator("#user")).to_have_text("victor")
    expect(page.locator("#role")).to_have_text("viewer")
    expect(page.locator("#agents tbody tr[data-agent-id='dqn']")).to_have_count(1)
    expect(page.locator("#overview-train-card")).to_be_hidden()
    expect(page.get_by_role("button", name="Start training")).to_have_count(0)

    page.locator("#agents").get_by_role("link", name="dqn").click()
    expect(page).to_have_url(re.compile(r"#/agents/dqn$"))
    expect(page.locator("#agent-page .agent-facts")).to_have_text(re.compile(r"^dqn on CartPole-v1"))
    expect(page.get_by_role("button", name="Start training")).to_have_count(0)
    # The page subscribed to the agent's channel, and gave it up when the viewer left.
    expect(page.locator("#training-chart")).to_contain_text("No training run yet.")
    assert "agent:dqn" in page.evaluate("window.tarsLive.lastEventIds")
    page.locator("nav").get_by_role("link", name="Overview").click()
    expect(page.locator("#overview-page")).to_be_visible()
    assert "agent:dqn" not in page.evaluate("window.tarsLive.lastEventIds")


@pytest.mark.browser
@pytest.mark.slow
def test_an_operator_trains_from_the_agent_page_and_its_curves_match_rest(stack: Stack, page: Page) -> None:
    log_in(page, stack.dashboard_url, "olivia", "#/agents/ppo")
    expect(page.locator("#role")).to_have_text("operator")
    form = page.locator("#agent-page form.train-form")
    expect(form.get_by_label("Agent")).to_have_value("ppo")
    form.get_by_label("Stop after").fill("12")
    form.get_by_role("button", name="Start training").click()
    run_id = form.locator(".outcome a[data-run-id]").get_attribute("data-run-id")
    assert run_id

    run_row = page.locator(f"#agent-runs tbody tr[data-run-id='{run_id}']")
    expect(run_row).to_have_attribute("data-status", "succeeded", timeout=90_000)
    expect(run_row).to_contain_text("12/12")
    chart = page.locator("#training-chart")
    expect(chart).to_have_attribute("data-run-id", run_id)
    expect(chart).to_have_attribute("data-points", "12")
    expect(chart.locator("svg [data-series='episode reward'] path")).to_have_count(1)
    expect(page.locator("#evaluation-chart")).to_have_attribute("data-points", str(EVALUATION_EPISODES))
    expect(page.locator("#evaluation-chart svg circle")).to_have_count(EVALUATION_EPISODES)

    headers = stack.token("olivia")
    run = httpx.get(f"{stack.dashboard_url}/api/v1/runs/{run_id}", headers=headers, timeout=10).json()
    assert len(run["rewards"]) == 12
    evaluations = httpx.get(
        f"{stack.dashboard_url}/api/v1/evaluations", params={"agent_id": "ppo"}, headers=headers, timeout=10
    ).json()["items"]
    assert shown_ids(page, "#agent-evaluations") == [evaluation["id"] for evaluation in evaluations]


@pytest.mark.browser
def test_the_explorer_filters_and_pages_through_evaluations_as_the_api_does(stack: Stack, page: Page) -> None:
    headers = stack.token("olivia")
    for number in range(60):
        submit_evaluation(stack, headers, agent_id="ppo", environment="CartPole-v1", region="us-east-1", reward=number)
    for number in range(15):
        submit_evaluation(stack, headers, agent_id="dqn", environment="CartPole-v1", region="us-east-1", reward=number)
        submit_evaluation(stack, headers, agent_id="ppo", environment="CartPole-v1", region="eu-west-1", reward=number)
    log_in(page, stack.dashboard_url, "olivia")

    def rest_page(**query: Any) -> dict[str, Any]:
        params = {"agent_id": "ppo", "region": "us-east-1", "limit": 25, **query}
        response = httpx.get(f"{stack.dashboard_url}/api/v1/evaluations", params=params, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json())

    page.locator("nav").get_by_role("link", name="Evaluations").click()
    filters = page.locator("form.filters")
    filters.get_by_label("Agent").select_option("ppo")
    filters.get_by_label("Region").select_option("us-east-1")
    filters.get_by_label("Per page").select_option("25")
    filters.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"#/evaluations\?agent_id=ppo&region=us-east-1&limit=25$"))

    first = rest_page()
    expect(page.locator("#explorer-evaluations tbody tr")).to_have_count(25)
    assert shown_ids(page, "#explorer-evaluations") == [item["id"] for item in first["items"]]
    expect(page.get_by_role("button", name="Newest")).to_be_disabled()

    page.get_by_role("button", name="Older →").click()
    second = rest_page(cursor=first["next_cursor"])
    expect(page.locator("#explorer-evaluations tbody tr").first).to_have_attribute(
        "data-evaluation-id", str(second["items"][0]["id"])
    )
    assert shown_ids(page, "#explorer-evaluations") == [item["id"] for item in second["items"]]
    expect(page.locator(".page-number")).to_have_text("page 2")

    page.get_by_role("button", name="Older →").click()
    third = rest_page(cursor=second["next_cursor"])
    assert third["next_cursor"] is None
    expect(page.locator("#explorer-evaluations tbody tr")).to_have_count(10)
    assert shown_ids(page, "#explorer-evaluations") == [item["id"] for item in third["items"]]
    expect(page.get_by_role("button", name="Older →")).to_be_disabled()

    page.get_by_role("button", name="← Newer").click()
    expect(page.locator("#explorer-evaluations tbody tr")).to_have_count(25)
    expect(page.locator(".page-number")).to_have_text("page 2")
    assert shown_ids(page, "#explorer-evaluations") == [item["id"] for item in second["items"]]
    page.get_by_role("button", name="Newest").click()
    expect(page.locator(".page-number")).to_have_text("newest page")
    assert shown_ids(page, "#explorer-evaluations") == [item["id"] for item in first["items"]]

    # On the newest page, a new evaluation that matches is announced rather than pushed in.
    submit_evaluation(stack, headers, agent_id="dqn", environment="CartPole-v1", region="us-east-1", reward=1)
    newest = submit_evaluation(stack, headers, agent_id="ppo", environment="CartPole-v1", region="us-east-1", reward=7)
    notice = page.locator("button.notice")
    expect(notice).to_have_text("1 new evaluation — show")
    notice.click()
    expect(page.locator("#explorer-evaluations tbody tr").first).to_have_attribute("data-evaluation-id", str(newest))
    expect(notice).to_be_hidden()

    # A time range that holds nothing; then a shared address that holds a filter.
    filters.get_by_label("Since").fill("2099-01-01T00:00")
    filters.get_by_role("button", name="Apply").click()
    expect(page.locator("#explorer-evaluations tbody tr")).to_have_count(0)
    expect(page.get_by_text("No evaluation matches these filters.")).to_be_visible()
    page.goto(f"{stack.dashboard_url}/#/evaluations?region=eu-west-1&limit=100")
    expect(page.locator("#explorer-evaluations tbody tr")).to_have_count(15)
    expect(page.locator("form.filters").get_by_label("Region")).to_have_value("eu-west-1")


@pytest.mark.browser
def test_a_batch_arrives_live_on_the_overview_and_is_counted_by_the_explorer(stack: Stack, page: Page) -> None:
    headers = stack.token("olivia")
    log_in(page, stack.dashboard_url, "olivia")

    def batch(**shared: Any) -> list[int]:
        items = [{"environment": "CartPole-v1", "region": "us-east-1", "reward": n, **shared} for n in range(30)]
        for index in range(0, 30, 3):  # another agent's items in between: announced apart, per agent
            items[index] = {**items[index], "agent_id": "dqn"}
        response = httpx.post(
            f"{stack.dashboard_url}/api/v1/evaluations/batch", json={"items": items}, headers=headers, timeout=10
        )
        assert response.status_code == 201, response.text
        return [int(i) for i in response.json()["ids"]]

    ids = batch(agent_id="ppo")
    rows = page.locator("#evaluations tbody tr")
    expect(rows.first).to_have_attribute("data-evaluation-id", str(ids[-1]))
    assert shown_ids(page, "#evaluations") == sorted(ids, reverse=True)[: rows.count()]

    page.locator("nav").get_by_role("link", name="Evaluations").click()
    filters = page.locator("form.filters")
    filters.get_by_label("Agent").select_option("ppo")
    filters.get_by_role("button", name="Apply").click()
    expect(page.locator("#explorer-evaluations tbody tr").first).to_be_visible()
    batch(agent_id="ppo")
    expect(page.locator("button.notice")).to_have_text("20 new evaluations — show")
