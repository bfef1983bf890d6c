"""How the page merges REST snapshots and live events (static/store.js), run in Chromium.

Snapshots and events race: a snapshot may be requested before an event and arrive after it. The
rule under test: a snapshot wins over what was applied before it was requested, and loses to what
was applied after.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.e2e.conftest import harness_page

HARNESS = """<!doctype html>
<script type="module">
import * as store from "/static/store.js";
window.store = store;
window.runs = () => new store.LiveCollection({
  keyOf: (run) => run.run_id, limit: 2, retain: (run) => run.status === "running",
});
</script>
"""


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with harness_page(browser, HARNESS) as page:
        yield page


def run(page: Page, script: str) -> Any:
    """Runs `script` (a function body that returns a value) with store.js's exports in scope."""
    names = "LiveCollection, RewardSeries, nextSequence, currentSequence, timeKey"
    return page.evaluate(f"(() => {{ const {{ {names} }} = store; {script} }})()")


@pytest.mark.browser
def test_a_snapshot_requested_before_an_event_does_not_undo_it(page: Page) -> None:
    assert run(
        page,
        """
        const runs = window.runs();
        const asked = currentSequence();               // GET /runs goes out
        runs.apply({ run_id: "a", status: "running", episodes_done: 7 }, nextSequence());  // event arrives first
        runs.applySnapshot([{ run_id: "a", status: "running", episodes_done: 5, environment: "CartPole-v1",
                              created_at: "2026-01-01T10:00:00Z" }], asked);
        return runs.get("a");
        """,
    ) == {
        "run_id": "a",
        "status": "running",
        "episodes_done": 7,
        "environment": "CartPole-v1",
        "created_at": "2026-01-01T10:00:00Z",
    }


@pytest.mark.browser
def test_a_snapshot_requested_after_an_event_replaces_it_and_drops_what_it_does_not_hold(page: Page) -> None:
    assert run(
        page,
        """
        const runs = window.runs();
        const at = "2026-01-01T10:00:00Z";
        runs.apply({ run_id: "a", status: "running", episodes_done: 7, created_at: at }, nextSequence());
        runs.apply({ run_id: "gone", status: "queued", created_at: "2026-01-01T09:00:00Z" }, nextSequence());
        const asked = currentSequence();
        runs.applySnapshot([{ run_id: "a", status: "succeeded", episodes_done: 10, created_at: at }], asked);
        return runs.values().map((r) => [r.run_id, r.status, r.episodes_done]);
        """,
    ) == [["a", "succeeded", 10]]


@pytest.mark.browser
def test_newest_first_with_the_limit_but_runs_in_progress_are_kept(page: Page) -> None:
    assert run(
        page,
        """
        const runs = window.runs();
        runs.applySnapshot([
          { run_id: "old-running", status: "running", created_at: "2026-01-01T08:00:00Z" },
          { run_id: "old-done", status: "succeeded", created_at: "2026-01-01T08:30:00Z" },
        ], currentSequence());
        // Two newer runs push both out of the two shown; the running one stays known.
        runs.apply({ run_id: "b", status: "queued", created_at: "2026-01-01T10:00:00.000002+00:00" }, nextSequence());
        runs.apply({ run_id: "c", status: "queued", created_at: "2026-01-01T10:00:00.000001Z" }, nextSequence());
        return [runs.values().map((r) => r.run_id), runs.all().map((r) => r.run_id)];
        """,
    ) == [["b", "c"], ["b", "c", "old-running"]]


@pytest.mark.browser
def test_a_removed_item_is_not_brought_back_by_an_older_snapshot(page: Page) -> None:
    assert run(
        page,
        """
        const evaluations = new LiveCollection({ keyOf: (e) => e.id });
        const asked = currentSequence();
        evaluations.apply({ id: 1, run_id: "a", created_at: "2026-01-01T10:00:00Z" }, nextSequence());
        evaluations.remove(1, nextSequence());         // its run started over
        evaluations.applySnapshot([{ id: 1, run_id: "a", created_at: "2026-01-01T10:00:00Z" }], asked);
        const before = evaluations.values().length;
        evaluations.applySnapshot([], currentSequence());
        return [before, evaluations.values().length];
        """,
    ) == [0, 0]


@pytest.mark.browser
def test_times_order_alike_whichever_way_the_zone_is_written(page: Page) -> None:
    assert run(
        page,
        """
        return [
          timeKey("2026-01-01T10:00:00.123456+00:00") === timeKey("2026-01-01T10:00:00.123456Z"),
          timeKey("2026-01-01T10:00:00.000002Z") > timeKey("2026-01-01T10:00:00.000001Z"),
          timeKey("2026-01-01T12:00:00+02:00") === timeKey("2026-01-01T10:00:00Z"),
        ];
        """,
    ) == [True, True, True]


@pytest.mark.browser
def test_reward_series_unites_snapshot_and_events_and_a_new_attempt_starts_over(page: Page) -> None:
    assert run(
        page,
        """
        const series = new RewardSeries("a");
        const asked = currentSequence();
        series.progress(3, 30, nextSequence());
        series.progress(4, 40, nextSequence());
        series.applySnapshot([10, 20, 30], asked);     // episodes 1-3, from before episode 4 was announced
        const united = series.values();
        const beforeRestart = currentSequence();
        series.restart(nextSequence());
        series.applySnapshot([10, 20, 30, 40], beforeRestart);  // the earlier attempt: ignored
        series.progress(1, 11, nextSequence());
        return [united, series.values()];
        """,
    ) == [[10, 20, 30, 40], [11]]


@pytest.mark.browser
def test_reloader_applies_no_snapshot_older_than_one_applied_and_retries_a_failed_one(page: Page) -> None:
    assert page.evaluate(
        """async () => {
        const { Reloader } = store;
        const applied = [];
        const answers = [];
        const reloader = new Reloader(
          () => new Promise((resolve, reject) => answers.push({ resolve, reject })),
          (snapshot) => applied.push(snapshot),
        );
        reloader.request();                     // 1
        reloader.request();                     // 2
        answers[1].resolve("second");
        await Promise.resolve();
        answers[0].resolve("first");            // older than what is shown: dropped
        await new Promise((r) => setTimeout(r, 0));
        reloader.request();                     // 3 fails, then is tried again
        answers[2].reject(new Error("503"));
        while (answers.length < 4) await new Promise((r) => setTimeout(r, 50));  // the retry, a second later
        answers[3].resolve("third");
        await new Promise((r) => setTimeout(r, 0));
        return applied;
    }"""
    ) == ["second", "third"]
