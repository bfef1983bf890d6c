"""What a training process reports back, one message at a time, while it works."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EpisodeFinished:
    episode: int
    reward: float
    length: int
    timesteps: int
    # Latest values from the SB3 logger (losses, entropy) and env-steps/s.
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluationFinished:
    episode: int
    reward: float
    length: int
    duration_ms: float


@dataclass(frozen=True)
class ModelSaved:
    path: str
    timesteps: int


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

    seq: int
    episodes: tuple[EpisodeFinished, ...] = ()
    evaluations: tuple[EvaluationFinished, ...] = ()
    model: ModelSaved | None = None


ProgressMessage = EpisodeFinished | EvaluationFinished | ModelSaved | TrainingFailed | TrainingDone
ProgressSink = Callable[[ProgressMessage], None]
StopCheck = Callable[[], bool]
