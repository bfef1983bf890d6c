"""Run one job in the training process: train (new or from a checkpoint), save, evaluate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.noise import NormalActionNoise
from stable_baselines3.common.vec_env import VecEnv

from tars.domain.progress import ModelSaved, ProgressSink, StopCheck, TrainingStopped
from tars.domain.runs import RunKind, TrainingJob
from tars.training.algorithms import algorithm_class
from tars.training.callbacks import EpisodeProgressCallback, LatestValuesWriter
from tars.training.evaluation import evaluate


def _never() -> bool:
    return False


def run_job(job: TrainingJob, sink: ProgressSink, model_path: Path, should_stop: StopCheck = _never) -> None:
    """Train (or load) the job's model, save it, evaluate it; report everything through ``sink``.

    ``should_stop`` is polled at every environment step; once it says so, the job raises
    ``TrainingStopped`` instead of saving or evaluating a model it did not finish.
    """
    torch.set_num_threads(1)
    if job.kind == RunKind.EVALUATE.value:
        if job.source_model is None:
            raise ValueError("an evaluation job needs a model to evaluate")
        model = algorithm_class(job.algorithm).load(job.source_model, device="cpu")
    else:
        model = train(job, sink, should_stop)
        if should_stop():
            raise TrainingStopped()
        model_path.parent.mkdir(parents=True, exist_ok=True)
        model.save(model_path)
        sink(ModelSaved(path=str(model_path), timesteps=int(model.num_timesteps)))
    evaluate(model, job.environment, job.evaluation_episodes, job.seed, sink, should_stop)


def train(job: TrainingJob, sink: ProgressSink, should_stop: StopCheck = _never) -> BaseAlgorithm:
    hyperparameters = dict(job.hyperparameters)
    n_envs = int(hyperparameters.pop("n_envs", 1))
    env = make_vec_env(job.environment, n_envs=n_envs, seed=job.seed)
    try:
        model = _model(job, env, hyperparameters)
        writer = LatestValuesWriter()
        # Our own logger: SB3's default one would also leave an SB3-<date> folder in /tmp per run.
        model.set_logger(Logger(folder=None, output_formats=[writer]))
        model.learn(
            total_timesteps=_timestep_budget(job, env),
            callback=EpisodeProgressCallback(job.episodes, sink, writer, should_stop),
            reset_num_timesteps=job.source_model is None,
        )
        return model
    finally:
        env.close()


def _model(job: TrainingJob, env: VecEnv, hyperparameters: dict[str, Any]) -> BaseAlgorithm:
    cls = algorithm_class(job.algorithm)
    if job.source_model is not None:
        model = cls.load(job.source_model, env=env, device="cpu")
        model.set_random_seed(job.seed)
        return model
    noise_std = hyperparameters.pop("noise_std", None)
    if noise_std:
        size = env.action_space.shape[-1] if env.action_space.shape else 1
        hyperparameters["action_noise"] = NormalActionNoise(np.zeros(size), noise_std * np.ones(size))
    return cls("MlpPolicy", env, seed=job.seed, verbose=0, device="cpu", **hyperparameters)


def _timestep_budget(job: TrainingJob, env: VecEnv) -> int:
    if job.timesteps is not None:
        return job.timesteps
    assert job.episodes is not None, "a job stops after episodes, timesteps, or both"
    spec = gym.spec(job.environment)
    max_steps = spec.max_episode_steps or 1000
    # An upper bound: the episode callback stops training first, at exactly job.episodes.
    return (job.episodes + env.num_envs) * max_steps + 1
