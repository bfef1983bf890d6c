"""The built-in agents and the environments they can train on."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tars.domain.errors import InvalidField, NotFound


class ActionSpace(StrEnum):
    DISCRETE = "discrete"
    CONTINUOUS = "continuous"


# Gymnasium's classic-control set, which ships with gymnasium itself.
ENVIRONMENTS: dict[str, ActionSpace] = {
    "CartPole-v1": ActionSpace.DISCRETE,
    "Acrobot-v1": ActionSpace.DISCRETE,
    "MountainCar-v0": ActionSpace.DISCRETE,
    "Pendulum-v1": ActionSpace.CONTINUOUS,
    "MountainCarContinuous-v0": ActionSpace.CONTINUOUS,
}


@dataclass(frozen=True)
class Algorithm:
    name: str
    action_spaces: frozenset[ActionSpace]


ALGORITHMS: dict[str, Algorithm] = {
    "dqn": Algorithm("dqn", frozenset({ActionSpace.DISCRETE})),
    "a2c": Algorithm("a2c", frozenset({ActionSpace.DISCRETE, ActionSpace.CONTINUOUS})),
    "ppo": Algorithm("ppo", frozenset({ActionSpace.DISCRETE, ActionSpace.CONTINUOUS})),
    "ddpg": Algorithm("ddpg", frozenset({ActionSpace.CONTINUOUS})),
    "td3": Algorithm("td3", frozenset({ActionSpace.CONTINUOUS})),
    "sac": Algorithm("sac", frozenset({ActionSpace.CONTINUOUS})),
}


@dataclass(frozen=True)
class AgentSpec:
    agent_id: str
    algorithm: str
    environment: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)


BUILTIN_AGENTS: tuple[AgentSpec, ...] = (
    AgentSpec("dqn", "dqn", "CartPole-v1"),
    AgentSpec("a2c", "a2c", "CartPole-v1"),
    AgentSpec("ppo", "ppo", "CartPole-v1"),
    AgentSpec("ddpg", "ddpg", "Pendulum-v1"),
)


def algorithms_for(environment: str) -> list[str]:
    space = ENVIRONMENTS[environment]
    return [name for name, algo in ALGORITHMS.items() if space in algo.action_spaces]


def check_algorithm(algorithm: str, *, field_name: str = "algorithm") -> None:
    if algorithm not in ALGORITHMS:
        raise InvalidField(field_name, f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")


def check_environment(algorithm: str, environment: str, *, field_name: str = "environment") -> None:
    """Refuse an environment we do not know, or one the algorithm cannot act in."""
    if environment not in ENVIRONMENTS:
        known = ", ".join(ENVIRONMENTS)
        raise InvalidField(field_name, f"unknown environment {environment!r}; known: {known}")
    algo = ALGORITHMS.get(algorithm)
    if algo is None:
        raise NotFound("algorithm", algorithm)
    space = ENVIRONMENTS[environment]
    if space not in algo.action_spaces:
        supported = " or ".join(sorted(s.value for s in algo.action_spaces))
        raise InvalidField(
            field_name,
            f"{algorithm} needs a {supported} action space but {environment} has a {space.value} one",
        )


@dataclass(frozen=True)
class Agent:
    agent_id: str
    algorithm: str
    environment: str
    # The agent's own settings.
    hyperparameters: dict[str, Any]
    # What a run on its environment trains with: tuned defaults + its own.
    effective_hyperparameters: dict[str, Any]
    builtin: bool
