"""Train one job for exactly its episodes, then evaluate it with a deterministic, seeded policy."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.monitor import Monitor

from tars.domain.runs import TrainingJob
from tars.training.algorithms import DEFAULT_HYPERPARAMETERS, algorithm_class
from tars.training.callbacks import EpisodeProgressCallback
from tars.training.progress import EvaluationFinished, ProgressSink

# Evaluation episodes use seeds far from training's, so they are not replays of it.
EVALUATION_SEED_OFFSET = 1_000_000


def train_and_evaluate(job: TrainingJob, sink: ProgressSink) -> None:
    torch.set_num_threads(1)
    env = Monitor(gym.make(job.environment))
    try:
        model = build_model(job, env)
        max_steps = env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 1000
        # An upper bound: the callback stops at exactly job.episodes, which always comes first.
        model.learn(total_timesteps=job.episodes * max_steps + 1, callback=EpisodeProgressCallback(job.episodes, sink))
        evaluate(model, job, sink)
    finally:
        env.close()


def build_model(job: TrainingJob, env: gym.Env[Any, Any]) -> BaseAlgorithm:
    hyperparameters = {**DEFAULT_HYPERPARAMETERS.get(job.algorithm, {}), **job.hyperparameters}
    cls = algorithm_class(job.algorithm)
    model = cls("MlpPolicy", env, seed=job.seed, verbose=0, device="cpu", **hyperparameters)
    # Without a logger of its own, SB3 leaves an SB3-<date> folder in /tmp for every run.
    model.set_logger(Logger(folder=None, output_formats=[]))
    return model


def evaluate(model: BaseAlgorithm, job: TrainingJob, sink: ProgressSink) -> None:
    env = gym.make(job.environment)
    try:
        for index in range(job.evaluation_episodes):
            observation, _ = env.reset(seed=job.seed + EVALUATION_SEED_OFFSET + index)
            started = time.perf_counter()
            total, length, done = 0.0, 0, False
            while not done:
                action, _ = model.predict(observation, deterministic=True)
                observation, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                length += 1
                done = bool(terminated or truncated)
            sink(
                EvaluationFinished(
                    episode=index + 1,
                    reward=total,
                    length=length,
                    duration_ms=(time.perf_counter() - started) * 1000.0,
                )
            )
    finally:
        env.close()
