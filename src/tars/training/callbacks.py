from __future__ import annotations

import time
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter

from tars.domain.progress import EpisodeFinished, ProgressSink, StopCheck, split_non_finite

# SB3 logger keys worth keeping, under shorter names.
_LOGGED = {
    "train/loss": "loss",
    "train/policy_gradient_loss": "policy_loss",
    "train/value_loss": "value_loss",
    "train/entropy_loss": "entropy_loss",
    "train/actor_loss": "actor_loss",
    "train/critic_loss": "critic_loss",
    "train/ent_coef": "ent_coef",
    "train/approx_kl": "approx_kl",
    "train/clip_fraction": "clip_fraction",
    "train/explained_variance": "explained_variance",
    "rollout/exploration_rate": "exploration_rate",
}


class LatestValuesWriter(KVWriter):
    """An SB3 logger output that keeps the latest training losses instead of printing them."""

    def __init__(self) -> None:
        self.latest: dict[str, float] = {}

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        for key, name in _LOGGED.items():
            value = key_values.get(key)
            if isinstance(value, int | float):
                self.latest[name] = float(value)

    def close(self) -> None:
        return None


class EpisodeProgressCallback(BaseCallback):
    """Reports every finished episode, with the latest losses and env-steps/s.

    Stops training after ``max_episodes`` episodes (across all parallel environments),
    when one is set, or as soon as ``should_stop`` says so; a timestep budget is left to
    ``learn(total_timesteps=...)``.
    """

    def __init__(
        self,
        max_episodes: int | None,
        sink: ProgressSink,
        writer: LatestValuesWriter,
        should_stop: StopCheck | None = None,
    ) -> None:
        super().__init__(verbose=0)
        self.should_stop = should_stop
        self.max_episodes = max_episodes
        self.sink = sink
        self.writer = writer
        self.episodes = 0
        self._started = time.perf_counter()
        self._start_timesteps = 0

    def _on_training_start(self) -> None:
        self._started = time.perf_counter()
        self._start_timesteps = self.num_timesteps

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            # The Monitor wrapper adds "episode" to the info of an episode's last step.
            episode = info.get("episode")
            if episode is None or self._enough():
                continue
            self.episodes += 1
            elapsed = max(time.perf_counter() - self._started, 1e-9)
            logged = {**self.writer.latest, "steps_per_second": (self.num_timesteps - self._start_timesteps) / elapsed}
            # A diverged loss is reported by name: as a number it would not survive JSON.
            metrics, non_finite = split_non_finite(logged)
            self.sink(
                EpisodeFinished(
                    episode=self.episodes,
                    reward=float(episode["r"]),
                    length=int(episode["l"]),
                    timesteps=int(self.num_timesteps),
                    metrics=metrics,
                    non_finite=non_finite,
                )
            )
        if self.should_stop is not None and self.should_stop():
            return False
        return not self._enough()

    def _enough(self) -> bool:
        return self.max_episodes is not None and self.episodes >= self.max_episodes
