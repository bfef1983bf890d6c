"""Tuned defaults per algorithm and environment, after the RL Baselines3 Zoo's published settings.

Replay buffers are capped at v1.0.1's ``buffer_max_size`` (10,000); settings that need
observation normalisation in the Zoo fall back to plain ones here.
"""

from __future__ import annotations

from typing import Any

_NET_256 = {"net_arch": [256, 256]}

# Used for any environment without a tuned entry.
BASELINE: dict[str, dict[str, Any]] = {
    "ppo": {"n_steps": 1024, "batch_size": 64, "n_envs": 1},
    "a2c": {"n_steps": 5, "n_envs": 1},
    "dqn": {"buffer_size": 10_000, "learning_starts": 1000},
    "ddpg": {"buffer_size": 10_000, "learning_starts": 1000, "noise_std": 0.1},
    "td3": {"buffer_size": 10_000, "learning_starts": 1000, "noise_std": 0.1},
    "sac": {"buffer_size": 10_000, "learning_starts": 1000},
}

TUNED: dict[tuple[str, str], dict[str, Any]] = {
    ("ppo", "CartPole-v1"): {
        "n_envs": 8,
        "n_steps": 32,
        "batch_size": 256,
        "gae_lambda": 0.8,
        "gamma": 0.98,
        "n_epochs": 20,
        "ent_coef": 0.0,
        "learning_rate": 0.001,
        "clip_range": 0.2,
    },
    ("ppo", "Acrobot-v1"): {"n_envs": 16, "n_steps": 256, "gae_lambda": 0.94, "gamma": 0.99, "n_epochs": 4},
    ("ppo", "MountainCar-v0"): {"n_envs": 16, "n_steps": 16, "gae_lambda": 0.98, "gamma": 0.99, "n_epochs": 4},
    ("ppo", "Pendulum-v1"): {
        "n_envs": 4,
        "n_steps": 1024,
        "gae_lambda": 0.95,
        "gamma": 0.9,
        "n_epochs": 10,
        "learning_rate": 0.001,
        "clip_range": 0.2,
        "use_sde": True,
        "sde_sample_freq": 4,
    },
    ("ppo", "MountainCarContinuous-v0"): {
        "n_envs": 1,
        "batch_size": 256,
        "n_steps": 8,
        "gamma": 0.9999,
        "learning_rate": 7.77e-05,
        "ent_coef": 0.00429,
        "clip_range": 0.1,
        "n_epochs": 10,
        "gae_lambda": 0.9,
        "max_grad_norm": 5.0,
        "vf_coef": 0.19,
        "use_sde": True,
        "policy_kwargs": {"log_std_init": -3.29, "ortho_init": False},
    },
    ("a2c", "CartPole-v1"): {"n_envs": 8, "ent_coef": 0.0},
    ("a2c", "Acrobot-v1"): {"n_envs": 16, "ent_coef": 0.0},
    ("a2c", "MountainCar-v0"): {"n_envs": 16, "ent_coef": 0.0},
    ("a2c", "Pendulum-v1"): {
        "n_envs": 8,
        "n_steps": 8,
        "gae_lambda": 0.9,
        "gamma": 0.9,
        "ent_coef": 0.0,
        "max_grad_norm": 0.5,
        "learning_rate": 0.0007,
        "use_sde": True,
        "policy_kwargs": {"log_std_init": -2.0, "ortho_init": False},
    },
    ("dqn", "CartPole-v1"): {
        "learning_rate": 0.001,
        "batch_size": 64,
        "buffer_size": 10_000,
        "learning_starts": 1000,
        "gamma": 0.99,
        "target_update_interval": 10,
        "train_freq": 256,
        "gradient_steps": 128,
        "exploration_fraction": 0.16,
        "exploration_final_eps": 0.04,
        "policy_kwargs": _NET_256,
    },
    ("dqn", "Acrobot-v1"): {
        "learning_rate": 0.00063,
        "batch_size": 128,
        "buffer_size": 10_000,
        "learning_starts": 0,
        "gamma": 0.99,
        "target_update_interval": 250,
        "train_freq": 4,
        "gradient_steps": -1,
        "exploration_fraction": 0.12,
        "exploration_final_eps": 0.1,
        "policy_kwargs": _NET_256,
    },
    ("dqn", "MountainCar-v0"): {
        "learning_rate": 0.004,
        "batch_size": 128,
        "buffer_size": 10_000,
        "learning_starts": 1000,
        "gamma": 0.98,
        "target_update_interval": 600,
        "train_freq": 16,
        "gradient_steps": 8,
        "exploration_fraction": 0.2,
        "exploration_final_eps": 0.07,
        "policy_kwargs": _NET_256,
    },
    ("ddpg", "Pendulum-v1"): {
        "buffer_size": 10_000,
        "gamma": 0.98,
        "learning_starts": 1000,
        "noise_std": 0.1,
        "gradient_steps": 1,
        "train_freq": 1,
        "learning_rate": 0.001,
        "policy_kwargs": {"net_arch": [400, 300]},
    },
    ("ddpg", "MountainCarContinuous-v0"): {
        "buffer_size": 10_000,
        "learning_starts": 1000,
        "noise_std": 0.5,
        "policy_kwargs": {"net_arch": [400, 300]},
    },
    ("td3", "Pendulum-v1"): {
        "buffer_size": 10_000,
        "gamma": 0.98,
        "learning_starts": 1000,
        "noise_std": 0.1,
        "gradient_steps": 1,
        "train_freq": 1,
        "learning_rate": 0.001,
        "policy_kwargs": {"net_arch": [400, 300]},
    },
    ("sac", "Pendulum-v1"): {"buffer_size": 10_000, "learning_starts": 1000, "learning_rate": 0.001},
}


def tuned_defaults(algorithm: str, environment: str) -> dict[str, Any]:
    return {**BASELINE[algorithm], **TUNED.get((algorithm, environment), {})}
