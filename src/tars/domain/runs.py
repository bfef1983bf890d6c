"""Training runs and the jobs that carry them to workers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class RunKind(StrEnum):
    TRAIN = "train"
    EVALUATE = "evaluate"


UNFINISHED = (RunStatus.QUEUED, RunStatus.RUNNING)
# Attempts at one run before it is failed for good (each lost worker or crash costs one).
MAX_ATTEMPTS = 5


class StaleAttempt(Exception):
    """Another worker has taken the run over; this attempt must stop writing."""


@dataclass(frozen=True)
class TrainingJob:
    """Everything a worker needs to train and evaluate one run; travels through the job queue."""

    run_id: str
    agent_id: str
    algorithm: str
    environment: str
    episodes: int | None
    evaluation_episodes: int
    seed: int
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    kind: str = RunKind.TRAIN.value
    timesteps: int | None = None
    # The checkpoint to continue training from, or to evaluate.
    source_model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingJob:
        return cls(
            run_id=str(data["run_id"]),
            agent_id=str(data["agent_id"]),
            algorithm=str(data["algorithm"]),
            environment=str(data["environment"]),
            episodes=None if data.get("episodes") is None else int(data["episodes"]),
            evaluation_episodes=int(data["evaluation_episodes"]),
            seed=int(data["seed"]),
            hyperparameters=dict(data.get("hyperparameters") or {}),
            kind=str(data.get("kind") or RunKind.TRAIN.value),
            timesteps=None if data.get("timesteps") is None else int(data["timesteps"]),
            source_model=data.get("source_model"),
        )


@dataclass(frozen=True)
class Attempt:
    """One worker's attempt at a job; its number fences what it writes against later attempts."""

    job: TrainingJob
    number: int


@dataclass(frozen=True)
class Run:
    """A run as everyone outside storage sees it: the API, events and the CLI."""

    run_id: str
    kind: str
    agent_id: str
    algorithm: str
    environment: str
    status: str
    episodes: int | None
    episodes_done: int
    timesteps: int | None
    timesteps_done: int
    source_run_id: str | None
    cancel_requested: bool
    evaluation_episodes: int
    seed: int
    hyperparameters: dict[str, Any]
    attempts: int
    worker: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    def event_data(self) -> dict[str, Any]:
        """What run events carry of it."""
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "agent_id": self.agent_id,
            "environment": self.environment,
            "status": self.status,
            "episodes": self.episodes,
            "episodes_done": self.episodes_done,
            "timesteps": self.timesteps,
            "timesteps_done": self.timesteps_done,
            "error": self.error,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


@dataclass(frozen=True)
class RunDetail(Run):
    """A run with what it has produced so far."""

    has_model: bool = False
    # Training reward of each episode so far.
    rewards: list[float] = field(default_factory=list)
    # Latest losses, entropy and env-steps/s.
    metrics: dict[str, float] | None = None
    # Summary of the run's evaluations (episodes, mean/std/min/max reward, mean length).
    evaluation: dict[str, Any] | None = None


@dataclass(frozen=True)
class ModelFile:
    """A run's checkpoint on disk, and the name a download gives it."""

    path: str
    filename: str
