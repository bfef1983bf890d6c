"""Events that tell watchers what changed; the bus carries them, the dashboard relays them."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import orjson


class EventType:
    RUN_QUEUED = "run.queued"
    RUN_STARTED = "run.started"
    RUN_PROGRESS = "run.progress"
    RUN_SUCCEEDED = "run.succeeded"
    RUN_FAILED = "run.failed"
    RUN_CANCELLED = "run.cancelled"
    EVALUATION_CREATED = "evaluation.created"
    # Many evaluations of one agent stored by one batch submission: data {"agent_id", "columns", "rows"}.
    EVALUATIONS_CREATED = "evaluations.created"
    EVALUATION_DELETED = "evaluation.deleted"
    # What the insight engine found, and what operators did with it: data is the insight, as the API
    # answers it (tars.domain.insights.Insight).
    INSIGHT_OPENED = "insight.opened"
    INSIGHT_UPDATED = "insight.updated"
    INSIGHT_RESOLVED = "insight.resolved"
    INSIGHT_ACKNOWLEDGED = "insight.acknowledged"
    INSIGHT_DISMISSED = "insight.dismissed"


PLAIN_CHANNELS = ("runs", "evaluations", "insights")
CHANNEL_PREFIXES = ("agent:", "run:")
MAX_CHANNEL_LENGTH = 128


def is_channel(name: object) -> bool:
    if not isinstance(name, str) or len(name) > MAX_CHANNEL_LENGTH:
        return False
    return name in PLAIN_CHANNELS or any(name.startswith(p) and len(name) > len(p) for p in CHANNEL_PREFIXES)


def _kind_channel(event_type: str) -> str:
    if event_type.startswith(("evaluation.", "evaluations.")):
        return "evaluations"
    if event_type.startswith("insight."):
        return "insights"
    return "runs"


@dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, Any] = field(default_factory=dict)
    # The event's id on each channel it was published on; given by the bus when it publishes.
    ids: dict[str, int] = field(default_factory=dict)
    # The W3C trace context it was published under (given by the bus): what relays it continues.
    trace: dict[str, str] = field(default_factory=dict)

    @property
    def channels(self) -> list[str]:
        """Every channel this event belongs on: its kind's, its agent's and its run's."""
        channels = [_kind_channel(self.type)]
        if agent_id := self.data.get("agent_id"):
            channels.append(f"agent:{agent_id}")
        if run_id := self.data.get("run_id"):
            channels.append(f"run:{run_id}")
        return channels

    def numbered(self, ids: dict[str, int]) -> Event:
        return replace(self, ids=ids)

    def traced(self, trace: dict[str, str]) -> Event:
        return replace(self, trace=trace) if trace and not self.trace else self

    def to_json(self) -> str:
        payload = {"type": self.type, "data": self.data, "ids": self.ids, "trace": self.trace}
        return orjson.dumps(payload, default=str).decode()

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        payload = orjson.loads(raw)
        ids = {str(channel): int(number) for channel, number in (payload.get("ids") or {}).items()}
        trace = {str(key): str(value) for key, value in (payload.get("trace") or {}).items()}
        return cls(type=str(payload["type"]), data=dict(payload.get("data") or {}), ids=ids, trace=trace)
