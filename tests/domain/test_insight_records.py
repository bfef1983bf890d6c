from __future__ import annotations

from datetime import datetime

import pytest

from tars.domain.events import Event, EventType, is_channel
from tars.domain.insights import InsightState, Observation, StateFilter
from tests.insight_records import at, observation


def test_insight_events_go_to_the_insights_channel_and_their_subjects() -> None:
    data = {"id": 1, "agent_id": "ppo", "run_id": "r-1"}
    for event_type in (
        EventType.INSIGHT_OPENED,
        EventType.INSIGHT_UPDATED,
        EventType.INSIGHT_RESOLVED,
        EventType.INSIGHT_ACKNOWLEDGED,
        EventType.INSIGHT_DISMISSED,
    ):
        assert Event(event_type, data).channels == ["insights", "agent:ppo", "run:r-1"]
    assert Event(EventType.INSIGHT_OPENED, {"agent_id": "ppo", "run_id": None}).channels == ["insights", "agent:ppo"]
    assert Event(EventType.RUN_STARTED, data).channels[0] == "runs"
    assert Event(EventType.EVALUATION_CREATED, data).channels[0] == "evaluations"
    assert is_channel("insights") and not is_channel("insight")


def test_an_observation_is_in_time_order_and_zoned() -> None:
    finding = observation().finding
    with pytest.raises(ValueError, match="timezone"):
        Observation(finding, datetime(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(ValueError, match="before"):
        Observation(finding, at(2), at(1))
    assert Observation(finding, at(1), at(1)).last_seen_at == at(1)


def test_the_active_filter_is_open_and_acknowledged() -> None:
    assert StateFilter.ACTIVE.states == (InsightState.OPEN, InsightState.ACKNOWLEDGED)
    assert StateFilter.DISMISSED.states == (InsightState.DISMISSED,)
    assert {f.value for f in StateFilter} == {s.value for s in InsightState} | {"active"}
