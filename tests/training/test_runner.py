from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tars.domain.runs import TrainingJob
from tars.training.progress import EpisodeFinished, EvaluationFinished, ProgressMessage
from tars.training.runner import train_and_evaluate


def run(algorithm: str, environment: str, episodes: int, evaluations: int, seed: int = 3) -> list[ProgressMessage]:
    messages: list[ProgressMessage] = []
    job = TrainingJob("run", algorithm, algorithm, environment, episodes, evaluations, seed)
    train_and_evaluate(job, messages.append)
    return messages


@pytest.mark.parametrize(
    ("algorithm", "environment", "episodes"),
    [("dqn", "CartPole-v1", 4), ("a2c", "CartPole-v1", 4), ("ppo", "CartPole-v1", 4), ("ddpg", "Pendulum-v1", 1)],
)
def test_trains_exactly_the_episodes_asked_then_evaluates(algorithm: str, environment: str, episodes: int) -> None:
    messages = run(algorithm, environment, episodes, evaluations=2)
    steps = [m for m in messages if isinstance(m, EpisodeFinished)]
    results = [m for m in messages if isinstance(m, EvaluationFinished)]
    assert [s.episode for s in steps] == list(range(1, episodes + 1))
    assert all(s.length > 0 for s in steps)
    assert steps[-1].timesteps == sum(s.length for s in steps)
    assert [r.episode for r in results] == [1, 2]
    assert all(r.length > 0 and r.duration_ms > 0 for r in results)
    # Evaluation comes after training, never interleaved.
    assert messages.index(results[0]) > messages.index(steps[-1])


def test_same_seed_same_results() -> None:
    first = run("dqn", "CartPole-v1", 3, 2, seed=99)
    second = run("dqn", "CartPole-v1", 3, 2, seed=99)
    assert [type(m) for m in first] == [type(m) for m in second]
    assert [(m.reward, m.length) for m in first if isinstance(m, EpisodeFinished | EvaluationFinished)] == [
        (m.reward, m.length) for m in second if isinstance(m, EpisodeFinished | EvaluationFinished)
    ]


def test_training_leaves_no_log_folders_behind() -> None:
    before = {p.name for p in Path(tempfile.gettempdir()).glob("SB3-*")}
    run("ppo", "CartPole-v1", 1, 1)
    assert {p.name for p in Path(tempfile.gettempdir()).glob("SB3-*")} == before
