"""What a training process reports back, one message at a time, while it works, and the report an
attempt sends of them.

The records declare their own bounds (``annotated_types``: metadata, no framework), so the one
schema that checks a report arriving from a separate worker is derived from them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from annotated_types import Ge, Lt, MaxLen, MinLen, Predicate

# INTEGER columns are 32 bits on PostgreSQL; timesteps and seq are 64.
Count = Annotated[int, Ge(0), Lt(2**31)]
EpisodeNumber = Annotated[int, Ge(1), Lt(2**31)]
Timesteps = Annotated[int, Ge(0), Lt(2**63)]
Finite = Annotated[float, Predicate(math.isfinite)]
MetricName = Annotated[str, MinLen(1), MaxLen(64)]
# A report holds what its worker collected while the last one was being recorded.
MAX_REPORT_ITEMS = 2000
# How a report is read off the wire: no unknown fields, nothing coerced (pydantic reads this; a
# plain mapping, so the domain imports no framework).
_STRICT: dict[str, Any] = {"extra": "forbid", "strict": True}


@dataclass(frozen=True)
class EpisodeFinished:
    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    episode: EpisodeNumber
    reward: Finite
    length: Count
    timesteps: Timesteps
    # Latest values from the SB3 logger (losses, entropy) and env-steps/s; finite ones only.
    metrics: Annotated[dict[str, Finite], MaxLen(64)] = field(default_factory=dict)
    # The logged values whose latest was NaN or infinite, by name: JSON has no such numbers (a
    # separate worker's report, PostgreSQL's JSONB and the bus's events would make them null or
    # refuse them), so a diverged loss travels as its name (`split_non_finite`).
    non_finite: Annotated[tuple[MetricName, ...], MaxLen(64)] = ()

    def all_metrics(self) -> dict[str, float]:
        """``metrics`` with each non-finite value back as NaN: what the detectors read."""
        if not self.non_finite:
            return self.metrics
        return {**self.metrics, **dict.fromkeys(self.non_finite, math.nan)}


def split_non_finite(values: dict[str, float]) -> tuple[dict[str, float], tuple[str, ...]]:
    """Logged values as an episode reports them: the finite ones, and the names of the others."""
    finite = {name: value for name, value in values.items() if math.isfinite(value)}
    if len(finite) == len(values):
        return values, ()
    return finite, tuple(sorted(name for name in values if name not in finite))


@dataclass(frozen=True)
class EvaluationFinished:
    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    episode: EpisodeNumber
    reward: Finite
    length: Count
    duration_ms: Annotated[float, Ge(0), Predicate(math.isfinite)]


@dataclass(frozen=True)
class ModelSaved:
    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    path: Annotated[str, MinLen(1), MaxLen(1024)]
    timesteps: Timesteps


@dataclass(frozen=True)
class TrainingFailed:
    error: str


@dataclass(frozen=True)
class TrainingDone:
    pass


class TrainingStopped(Exception):
    """Raised inside a training job that was asked to stop (cancelled, or its worker shutting down)."""


@dataclass(frozen=True)
class Report:
    """What an attempt did since its last report, recorded together in one transaction.

    ``seq`` numbers an attempt's reports from 1, so that one delivered twice (a retry after a
    lost answer) is recorded once.
    """

    __pydantic_config__: ClassVar[dict[str, Any]] = _STRICT

    seq: Annotated[int, Ge(1), Lt(2**63)]
    episodes: Annotated[tuple[EpisodeFinished, ...], MaxLen(MAX_REPORT_ITEMS)] = ()
    evaluations: Annotated[tuple[EvaluationFinished, ...], MaxLen(MAX_REPORT_ITEMS)] = ()
    model: ModelSaved | None = None


ProgressMessage = EpisodeFinished | EvaluationFinished | ModelSaved | TrainingFailed | TrainingDone
ProgressSink = Callable[[ProgressMessage], None]
StopCheck = Callable[[], bool]
