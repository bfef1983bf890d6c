"""Counting what was stored: a batch at a time, labels looked up once per group."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tars.domain.evaluations import EvaluationFacts
from tars.metrics.catalogue import (
    EVALUATION_DURATION,
    EVALUATION_REWARD,
    EVALUATIONS,
    TRAINING_EPISODE_REWARD,
    TRAINING_EPISODES,
    TRAINING_LOSS,
    TRAINING_STEPS,
    TRAINING_STEPS_PER_SECOND,
)
from tars.version import VERSION


def count_evaluations(evaluations: Iterable[EvaluationFacts]) -> None:
    counts: dict[tuple[str, str, str, str], int] = {}
    rewards: dict[tuple[str, str], list[float]] = {}
    durations: dict[tuple[str, str, str], list[float]] = {}
    for evaluation in evaluations:
        key = (evaluation.agent_id, evaluation.environment, evaluation.region, evaluation.status)
        counts[key] = counts.get(key, 0) + 1
        rewards.setdefault(key[:2], []).append(evaluation.reward)
        if evaluation.duration_ms is not None:
            durations.setdefault(key[:3], []).append(evaluation.duration_ms / 1000)
    for key, count in counts.items():
        EVALUATIONS.labels(*key, VERSION).inc(count)
    for (agent_id, environment), values in rewards.items():
        EVALUATION_REWARD.observe_many((agent_id, environment, VERSION), values)
    for (agent_id, environment, region), seconds in durations.items():
        EVALUATION_DURATION.observe_many((agent_id, environment, region, VERSION), seconds)


# The losses training reports (tars.training.callbacks names SB3's "train/..." values so).
LOSS_KINDS = frozenset({"loss", "value_loss", "policy_loss", "entropy_loss", "actor_loss", "critic_loss"})


def count_training(agent_id: str, rewards: Sequence[float], steps: int, latest: Mapping[str, Any] | None) -> None:
    """Episodes a worker reported for one agent, and the latest losses and speed that came with them."""
    if rewards:
        TRAINING_EPISODES.labels(agent_id, VERSION).inc(len(rewards))
        TRAINING_EPISODE_REWARD.observe_many((agent_id, VERSION), rewards)
    if steps > 0:
        TRAINING_STEPS.labels(agent_id, VERSION).inc(steps)
    for name, value in (latest or {}).items():
        if name in LOSS_KINDS and isinstance(value, int | float):
            TRAINING_LOSS.labels(agent_id, name, VERSION).set(value)
        elif name == "steps_per_second" and isinstance(value, int | float):
            TRAINING_STEPS_PER_SECOND.labels(agent_id, VERSION).set(value)
