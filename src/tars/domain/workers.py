"""What a worker says about itself in each heartbeat: the one declaration the registry stores and
`/health` shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    algorithms: list[str]
    slots: int
    busy: int
    runs: list[str]
    jobs_done: int
    rss_bytes: int
    # Seconds since the epoch (a heartbeat gauge reads them as they are; the API shows them as times).
    started_at: float
    last_seen: float
    state: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerStatus:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


# Fields that hold a moment, as seconds since the epoch.
MOMENTS = ("started_at", "last_seen")
