"""Evaluation episodes on vectorised environments, with a deterministic policy and fixed seeds."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv

from tars.domain.progress import EvaluationFinished, ProgressSink, StopCheck, TrainingStopped

# Evaluation uses seeds far from training's, so its episodes are not replays of training ones.
EVALUATION_SEED_OFFSET = 1_000_000
MAX_PARALLEL_ENVS = 8


def evaluate(
    model: BaseAlgorithm,
    environment: str,
    episodes: int,
    seed: int,
    sink: ProgressSink,
    should_stop: StopCheck | None = None,
) -> None:
    """Run ``episodes`` episodes spread over parallel environments; report each as it ends.

    Each environment runs a fixed share of the episodes (as SB3's ``evaluate_policy`` does), so
    the set of episodes — and their rewards — depend only on the seed, not on timing.
    """
    n_envs = min(episodes, MAX_PARALLEL_ENVS)
    env = DummyVecEnv([lambda: gym.make(environment)] * n_envs)
    try:
        env.seed(seed + EVALUATION_SEED_OFFSET)
        targets = np.array([(episodes + i) // n_envs for i in range(n_envs)])
        counts = np.zeros(n_envs, dtype=int)
        rewards = np.zeros(n_envs)
        lengths = np.zeros(n_envs, dtype=int)
        started = np.full(n_envs, time.perf_counter())
        observations = env.reset()
        reported = 0
        while (counts < targets).any():
            if should_stop is not None and should_stop():
                raise TrainingStopped()
            actions, _ = model.predict(observations, deterministic=True)  # type: ignore[arg-type]
            observations, step_rewards, dones, _ = env.step(actions)
            rewards += step_rewards
            lengths += 1
            now = time.perf_counter()
            for i in np.flatnonzero(dones):
                if counts[i] < targets[i]:
                    reported += 1
                    sink(
                        EvaluationFinished(
                            episode=reported,
                            reward=float(rewards[i]),
                            length=int(lengths[i]),
                            duration_ms=(now - started[i]) * 1000.0,
                        )
                    )
                    counts[i] += 1
                rewards[i], lengths[i], started[i] = 0.0, 0, now
    finally:
        env.close()
