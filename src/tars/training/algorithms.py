"""The registry of Stable-Baselines3 algorithms T.A.R.S. trains, by name."""

from __future__ import annotations

from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

ALGORITHM_CLASSES: dict[str, type[BaseAlgorithm]] = {
    "dqn": DQN,
    "a2c": A2C,
    "ppo": PPO,
    "ddpg": DDPG,
    "td3": TD3,
    "sac": SAC,
}


def algorithm_class(name: str) -> type[BaseAlgorithm]:
    try:
        return ALGORITHM_CLASSES[name]
    except KeyError:
        raise KeyError(f"unknown algorithm {name!r}") from None
