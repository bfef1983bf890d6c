"""Training runs and the jobs that carry them to workers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED)


@dataclass(frozen=True)
class TrainingJob:
    """Everything a worker needs to train and evaluate one run; travels through the job queue."""

    run_id: str
    agent_id: str
    algorithm: str
    environment: str
    episodes: int
    evaluation_episodes: int
    seed: int
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingJob:
        return cls(
            run_id=str(data["run_id"]),
            agent_id=str(data["agent_id"]),
            algorithm=str(data["algorithm"]),
            environment=str(data["environment"]),
            episodes=int(data["episodes"]),
            evaluation_episodes=int(data["evaluation_episodes"]),
            seed=int(data["seed"]),
            hyperparameters=dict(data.get("hyperparameters") or {}),
        )
