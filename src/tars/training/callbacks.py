from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback

from tars.training.progress import EpisodeFinished, ProgressSink


class EpisodeProgressCallback(BaseCallback):
    """Reports every finished episode and stops training after ``max_episodes``."""

    def __init__(self, max_episodes: int, sink: ProgressSink) -> None:
        super().__init__(verbose=0)
        self.max_episodes = max_episodes
        self.sink = sink
        self.episodes = 0

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            # The Monitor wrapper adds "episode" to the info of an episode's last step.
            episode = info.get("episode")
            if episode is None or self.episodes >= self.max_episodes:
                continue
            self.episodes += 1
            self.sink(
                EpisodeFinished(
                    episode=self.episodes,
                    reward=float(episode["r"]),
                    length=int(episode["l"]),
                    timesteps=int(self.num_timesteps),
                )
            )
        return self.episodes < self.max_episodes
