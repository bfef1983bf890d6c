"""Events that tell watchers what changed; the bus carries them, the dashboard relays them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


class EventType:
    RUN_QUEUED = "run.queued"
    RUN_STARTED = "run.started"
    RUN_PROGRESS = "run.progress"
    RUN_SUCCEEDED = "run.succeeded"
    RUN_FAILED = "run.failed"
    RUN_CANCELLED = "run.cancelled"
    EVALUATION_CREATED = "evaluation.created"


@dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def channel(self) -> str:
        return "evaluations" if self.type.startswith("evaluation.") else "runs"

    def to_json(self) -> str:
        return json.dumps({"type": self.type, "data": self.data}, default=str)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        payload = json.loads(raw)
        return cls(type=str(payload["type"]), data=dict(payload.get("data") or {}))
