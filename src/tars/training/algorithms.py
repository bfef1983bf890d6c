"""The registry of Stable-Baselines3 algorithms T.A.R.S. trains, by name."""

from __future__ import annotations

from typing import Any

from stable_baselines3 import A2C, DDPG, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm

ALGORITHM_CLASSES: dict[str, type[BaseAlgorithm]] = {"dqn": DQN, "a2c": A2C, "ppo": PPO, "ddpg": DDPG}

# Defaults small enough that a handful of episodes trains in seconds on one core.
DEFAULT_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "dqn": {"learning_starts": 100, "buffer_size": 10_000, "target_update_interval": 250},
    "a2c": {},
    "ppo": {"n_steps": 512, "batch_size": 64},
    "ddpg": {"learning_starts": 100, "buffer_size": 10_000},
}


def algorithm_class(name: str) -> type[BaseAlgorithm]:
    try:
        return ALGORITHM_CLASSES[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}") from None
