"""The insight service on both backends: the lifecycle of an insight as findings arrive, replays and
stale findings that change nothing, operators' decisions, and engine replicas applying at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import text

from tars.domain.audit import AuditAction, AuditFilter
from tars.domain.errors import Conflict, InvalidField, NotFound
from tars.domain.events import Event
from tars.domain.insights import (
    FindingKind,
    InsightFilter,
    InsightResolved,
    InsightState,
    Observation,
    Severity,
    StateFilter,
)
from tars.domain.users import Credential, Principal, Role
from tars.services.insights import insight_data
from tars.services.runtime import Runtime
from tars.settings import Settings
from tars.wiring.runtime import build_runtime
from tests.insight_records import at, events_after, last_event_id, observation, resolved

OPERATOR = Principal(user_id=2, username="operator-user", role=Role.OPERATOR, credential=Credential.TOKEN)


@pytest.fixture
def published(runtime: Runtime) -> Callable[[], list[Event]]:
    """The insight events published since the test began."""
    start = last_event_id(runtime)
    return lambda: events_after(runtime, start)


def test_an_open_finding_opens_an_insight_and_announces_it(
    runtime: Runtime, published: Callable[[], list[Event]]
) -> None:
    seen = observation(run_id="r-2", first=1, last=10)
    [insight] = runtime.insights.apply([seen])
    assert insight.state is InsightState.OPEN
    assert (insight.kind, insight.severity) == (FindingKind.REWARD_REGRESSION, Severity.WARNING)
    assert (insight.agent_id, insight.environment, insight.region, insight.run_id) == (
        "ppo", "CartPole-v1", "eu-west-1", "r-2"
    )  # fmt: skip
    assert (insight.first_seen_at, insight.last_seen_at, insight.resolved_at) == (at(1), at(10), None)
    assert insight.evidence["before"] == {"n": 200, "mean": 480.0}
    assert insight.recommendation.parameters == {"run_id": "r-1"}
    assert runtime.insights.get(insight.id) == insight
    [event] = published()
    assert event.type == "insight.opened" and event.data == insight_data(insight)
    # On the insights channel, and on its agent's and run's.
    assert event.channels == ["insights", "agent:ppo", "run:r-2"]


def test_later_evidence_updates_the_insight_and_a_replay_changes_nothing(
    runtime: Runtime, published: Callable[[], list[Event]]
) -> None:
    first = observation(last=10, drop=0.2)
    [opened] = runtime.insights.apply([first])
    grown = observation(last=20, drop=0.35, severity=Severity.CRITICAL, summary="reward fell 35 %")
    [updated] = runtime.insights.apply([grown])
    assert updated.id == opened.id and updated.state is InsightState.OPEN
    assert (updated.severity, updated.impact, updated.summary) == (Severity.CRITICAL, 0.35, "reward fell 35 %")
    assert (updated.first_seen_at, updated.last_seen_at) == (opened.first_seen_at, at(20))
    assert updated.updated_at >= opened.updated_at
    # The same observations again (an engine replaying its feed), and one older than the latest.
    assert runtime.insights.apply([first, grown, grown]) == []
    assert runtime.insights.apply([observation(last=15, drop=0.5)]) == []
    assert runtime.insights.get(opened.id) == updated
    assert [event.type for event in published()] == ["insight.opened", "insight.updated"]


def test_a_resolved_finding_resolves_the_insight_once(runtime: Runtime, published: Callable[[], list[Event]]) -> None:
    seen = observation(last=10)
    [opened] = runtime.insights.apply([seen])
    clear = resolved(seen, last=30)
    [closed] = runtime.insights.apply([clear])
    assert closed.id == opened.id and closed.state is InsightState.RESOLVED
    assert (closed.resolved_at, closed.last_seen_at) == (at(30), at(10))
    assert closed.resolution == "reward back to its baseline"
    assert closed.summary == opened.summary  # still says what was wrong
    # Replays of the whole story change nothing: no second resolution, no insight opened again.
    assert runtime.insights.apply([seen, clear, seen, clear]) == []
    assert [event.type for event in published()] == ["insight.opened", "insight.resolved"]
    # The condition seen again after it cleared: a new insight.
    [again] = runtime.insights.apply([observation(first=40, last=45)])
    assert again.id != opened.id and again.state is InsightState.OPEN
    # A resolution older than the new insight's evidence is a replay of the old one's.
    assert runtime.insights.apply([clear]) == []
    page = runtime.insights.list(InsightFilter(), limit=10)
    assert [(i.id, i.state) for i in page.items] == [(again.id, InsightState.OPEN), (opened.id, InsightState.RESOLVED)]


def test_a_resolved_finding_without_an_insight_changes_nothing(
    runtime: Runtime, published: Callable[[], list[Event]]
) -> None:
    assert runtime.insights.apply([resolved(observation(), last=5)]) == []
    assert runtime.insights.list(InsightFilter(), limit=10).items == []
    assert published() == []


def test_a_dismissed_insight_is_updated_quietly_and_not_opened_again_until_it_clears(
    runtime: Runtime, published: Callable[[], list[Event]]
) -> None:
    [opened] = runtime.insights.apply([observation(last=10)])
    dismissed = runtime.insights.dismiss(opened.id, by=OPERATOR, note="a planned change")
    assert (dismissed.state, dismissed.dismissed_by, dismissed.note) == (
        InsightState.DISMISSED, "operator-user", "a planned change"
    )  # fmt: skip
    [quiet] = runtime.insights.apply([observation(last=20, drop=0.4, severity=Severity.CRITICAL)])
    assert (quiet.id, quiet.state, quiet.impact, quiet.last_seen_at) == (opened.id, InsightState.DISMISSED, 0.4, at(20))
    assert [event.type for event in published()] == ["insight.opened", "insight.dismissed"]
    [closed] = runtime.insights.apply([resolved(observation(), last=30)])
    assert (closed.id, closed.state, closed.dismissed_by) == (opened.id, InsightState.RESOLVED, "operator-user")
    [again] = runtime.insights.apply([observation(first=31, last=40)])
    assert again.state is InsightState.OPEN and again.id != opened.id
    assert [event.type for event in published()][2:] == ["insight.resolved", "insight.opened"]


def test_an_acknowledged_insight_keeps_being_updated_and_announced(
    runtime: Runtime, published: Callable[[], list[Event]]
) -> None:
    [opened] = runtime.insights.apply([observation(last=10)])
    acknowledged = runtime.insights.acknowledge(opened.id, by=OPERATOR)
    assert (acknowledged.state, acknowledged.acknowledged_by, acknowledged.note) == (
        InsightState.ACKNOWLEDGED, "operator-user", None
    )  # fmt: skip
    assert acknowledged.acknowledged_at is not None
    [updated] = runtime.insights.apply([observation(last=20, drop=0.3)])
    assert (updated.state, updated.acknowledged_by, updated.impact) == (InsightState.ACKNOWLEDGED, "operator-user", 0.3)
    events = published()
    assert [event.type for event in events] == ["insight.opened", "insight.acknowledged", "insight.updated"]
    assert events[1].data == insight_data(acknowledged)


def test_each_subject_and_kind_has_its_own_insight(runtime: Runtime) -> None:
    changed = runtime.insights.apply(
        [
            observation(region="eu-west-1"),
            observation(region="us-east-1"),
            observation(region=None),
            observation(kind=FindingKind.FAILURE_RATE_SPIKE),
            observation(agent_id="a2c"),
            observation(environment=None, region=None, run_id="r-9", kind=FindingKind.LEARNING_STALL),
        ]
    )
    assert len({insight.id for insight in changed}) == 6
    # Applied in the order given, whatever order they were stored in.
    assert [i.region for i in changed[:3]] == ["eu-west-1", "us-east-1", None]
    assert runtime.insights.apply([observation(region=None, last=11)])[0].id == changed[2].id


def test_operators_cannot_act_on_a_resolved_insight(runtime: Runtime) -> None:
    seen = observation()
    [opened] = runtime.insights.apply([seen])
    runtime.insights.apply([resolved(seen, last=20)])
    for act in (runtime.insights.acknowledge, runtime.insights.dismiss):
        with pytest.raises(InsightResolved, match="is resolved") as refused:
            act(opened.id, by=OPERATOR, note="too late")
        assert isinstance(refused.value, Conflict) and refused.value.state is InsightState.RESOLVED
    assert runtime.insights.get(opened.id).note is None
    with pytest.raises(NotFound):
        runtime.insights.acknowledge(opened.id + 100, by=OPERATOR)
    with pytest.raises(NotFound):
        runtime.insights.get(opened.id + 100)


def test_decisions_are_audited_and_notes_bounded(runtime: Runtime) -> None:
    [opened] = runtime.insights.apply([observation()])
    with pytest.raises(InvalidField, match="note"):
        runtime.insights.acknowledge(opened.id, by=OPERATOR, note="x" * 501)
    runtime.insights.acknowledge(opened.id, by=OPERATOR, note="looking")
    runtime.insights.dismiss(opened.id, by=None, note="x" * 500)
    events = runtime.audit_log.events(AuditFilter(), limit=10)
    assert [(e.action, e.actor, e.target) for e in events[:2]] == [
        (AuditAction.INSIGHT_DISMISSED.value, "system", str(opened.id)),
        (AuditAction.INSIGHT_ACKNOWLEDGED.value, "operator-user", str(opened.id)),
    ]
    assert events[1].details is not None and events[1].details["note"] == "looking"
    assert events[1].details["previous_state"] == "open" and events[0].details["previous_state"] == "acknowledged"


def test_non_finite_numbers_are_stored_as_null(runtime: Runtime) -> None:
    seen = observation(ratio=float("inf"), summary_stats={"mean": float("nan"), "n": 3})
    finding = replace(seen.finding, impact=float("inf"), confidence=float("nan"))
    odd = Observation(finding, seen.first_seen_at, seen.last_seen_at)
    [insight] = runtime.insights.apply([odd])
    assert insight.evidence["ratio"] is None and insight.evidence["summary_stats"] == {"mean": None, "n": 3}
    assert (insight.impact, insight.confidence) == (None, 0.0)
    assert runtime.insights.get(insight.id) == insight
    assert runtime.insights.apply([odd]) == []


def test_pages_cover_every_insight_once_newest_first(runtime: Runtime) -> None:
    regions = ["eu-west-1", "us-east-1", "us-west-2", "ap-southeast-1"]
    # Twelve subjects, first seen three at a time: ties on first_seen_at are ordered by id.
    runtime.insights.apply(
        [observation(agent_id=f"agent-{n}", region=regions[n % 4], first=n // 3, last=20) for n in range(12)]
    )
    seen, cursor = [], None
    while True:
        page = runtime.insights.list(InsightFilter(), limit=5, cursor=cursor)
        seen += page.items
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == 12 and len({i.id for i in seen}) == 12
    order = [(i.first_seen_at, i.id) for i in seen]
    assert order == sorted(order, reverse=True)
    only = runtime.insights.list(InsightFilter(region="us-east-1", since=at(1), until=at(3)), limit=10).items
    assert {(i.agent_id, i.region) for i in only} == {("agent-5", "us-east-1")}
    with pytest.raises(InvalidField, match="limit"):
        runtime.insights.list(InsightFilter(), limit=0)
    with pytest.raises(InvalidField, match="cursor"):
        runtime.insights.list(InsightFilter(), limit=5, cursor="nonsense")


def test_open_counts_cover_every_kind_and_severity(runtime: Runtime) -> None:
    counts = runtime.insights.open_counts()
    assert len(counts) == len(FindingKind) * len(Severity) and set(counts.values()) == {0}
    [a, _, c] = runtime.insights.apply(
        [
            observation(region="eu-west-1", severity=Severity.CRITICAL),
            observation(region="us-east-1", severity=Severity.CRITICAL),
            observation(kind=FindingKind.LEARNING_STALL, severity=Severity.INFO),
        ]
    )
    runtime.insights.acknowledge(a.id, by=OPERATOR)  # still active
    runtime.insights.dismiss(c.id, by=OPERATOR)  # not any more
    counts = runtime.insights.open_counts()
    assert {key: n for key, n in counts.items() if n} == {(FindingKind.REWARD_REGRESSION, Severity.CRITICAL): 2}
    runtime.insights.apply([resolved(observation(region="eu-west-1"), last=20)])
    assert runtime.insights.open_counts()[(FindingKind.REWARD_REGRESSION, Severity.CRITICAL)] == 1


def test_the_database_holds_one_unresolved_insight_per_kind_and_subject(runtime: Runtime) -> None:
    [opened] = runtime.insights.apply([observation()])
    with runtime.engine.connect() as connection, pytest.raises(Exception, match=r"(?i)unique"):
        connection.execute(
            text(
                "INSERT INTO insights (kind, severity, state, agent_id, subject_key, first_seen_at, last_seen_at, "
                "evidence, confidence, summary, recommendation, updated_at) SELECT kind, severity, 'acknowledged', "
                "agent_id, subject_key, first_seen_at, last_seen_at, evidence, confidence, summary, recommendation, "
                "updated_at FROM insights WHERE id = :id"
            ),
            {"id": opened.id},
        )
    runtime.insights.apply([resolved(observation(), last=20)])
    [again] = runtime.insights.apply([observation(first=21, last=22)])  # resolved ones do not count
    assert again.id != opened.id


# Engine replicas applying at once


@pytest.fixture
def replica(settings: Settings, runtime: Runtime) -> Iterator[Runtime]:
    """Another engine process of the same deployment: its own runtime, the same database (and Redis)."""
    other = build_runtime(settings, migrate_schema=False)
    yield other
    other.close()


def _concurrently(*calls: Callable[[], Any]) -> None:
    """Run ``calls`` at once, each in its own thread, and re-raise the first failure."""
    start = threading.Barrier(len(calls))
    failures: list[BaseException] = []

    def run(call: Callable[[], Any]) -> None:
        start.wait()
        try:
            call()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if failures:
        raise failures[0]


def test_replicas_applying_the_same_observations_at_once_store_and_announce_each_change_once(
    backend: str, runtime: Runtime, replica: Runtime
) -> None:
    starts = [last_event_id(side) for side in (runtime, replica)]
    subjects = [f"agent-{n}" for n in range(8)]
    stories = [
        [observation(agent_id=agent, last=10)]
        + [observation(agent_id=agent, last=20, drop=0.3)]
        + ([resolved(observation(agent_id=agent), last=30)] if n % 2 else [])
        for n, agent in enumerate(subjects)
    ]
    for step in range(3):
        batch = [story[step] for story in stories if step < len(story)]
        # Each replica applies the whole step, in the opposite order of the other's.
        _concurrently(
            lambda batch=batch: runtime.insights.apply(batch), lambda batch=batch: replica.insights.apply(batch[::-1])
        )
    every = runtime.insights.list(InsightFilter(), limit=100).items
    assert sorted(i.agent_id for i in every) == subjects  # no duplicates
    assert {i.agent_id: i.state for i in every} == {
        agent: InsightState.RESOLVED if n % 2 else InsightState.OPEN for n, agent in enumerate(subjects)
    }
    assert all(i.impact == 0.3 and i.last_seen_at == at(20) for i in every)
    # Distributed, both publish on one bus; embedded, each on its own.
    sides = list(zip((runtime, replica), starts, strict=True))
    events = [
        event for side, start in sides[: 1 if backend == "distributed" else 2] for event in events_after(side, start)
    ]
    announced = sorted((event.data["agent_id"], event.type) for event in events)
    expected = sorted(
        (agent, kind)
        for n, agent in enumerate(subjects)
        for kind in ["insight.opened", "insight.updated"] + (["insight.resolved"] if n % 2 else [])
    )
    assert announced == expected


def test_replicas_racing_to_open_many_subjects_never_duplicate_one(runtime: Runtime, replica: Runtime) -> None:
    for round_ in range(5):
        batch = [
            observation(agent_id=f"agent-{n}", region="us-east-1", first=round_, last=round_ + 1) for n in range(6)
        ]
        sides = (runtime, replica, runtime, replica)
        _concurrently(*(lambda side=side, batch=batch: side.insights.apply(batch) for side in sides))
    page = runtime.insights.list(InsightFilter(state=StateFilter.OPEN), limit=100).items
    assert len(page) == 6 and {i.last_seen_at for i in page} == {at(5)}
    assert runtime.insights.open_counts()[(FindingKind.REWARD_REGRESSION, Severity.WARNING)] == 6


def test_findings_resolve_and_reopen_in_order_within_one_batch(runtime: Runtime) -> None:
    seen = observation(last=10)
    changed = runtime.insights.apply([seen, resolved(seen, last=20), observation(first=25, last=30)])
    assert [(i.state, i.last_seen_at) for i in changed] == [
        (InsightState.OPEN, at(10)),
        (InsightState.RESOLVED, at(10)),
        (InsightState.OPEN, at(30)),
    ]
    assert changed[0].id == changed[1].id != changed[2].id
