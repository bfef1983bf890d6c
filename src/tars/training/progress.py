"""What a training process reports back, one message at a time, while it works."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class EpisodeFinished:
    episode: int
    reward: float
    length: int
    timesteps: int


@dataclass(frozen=True)
class EvaluationFinished:
    episode: int
    reward: float
    length: int
    duration_ms: float


@dataclass(frozen=True)
class TrainingFailed:
    error: str


@dataclass(frozen=True)
class TrainingDone:
    pass


ProgressMessage = EpisodeFinished | EvaluationFinished | TrainingFailed | TrainingDone
ProgressSink = Callable[[ProgressMessage], None]
