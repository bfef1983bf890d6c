from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from tars.domain.progress import EpisodeFinished, EvaluationFinished, ModelSaved, ProgressMessage
from tars.domain.runs import RunKind, TrainingJob
from tars.domain.tuning import tuned_defaults
from tars.training.runner import run_job


def make_job(
    algorithm: str, environment: str, episodes: int | None, evaluations: int = 2, **extra: object
) -> TrainingJob:
    hyperparameters = {**tuned_defaults(algorithm, environment), "learning_starts": 50}
    if algorithm in ("ppo", "a2c"):
        hyperparameters.pop("learning_starts")
    return TrainingJob(
        run_id="run",
        agent_id=algorithm,
        algorithm=algorithm,
        environment=environment,
        episodes=episodes,
        evaluation_episodes=evaluations,
        seed=3,
        hyperparameters=hyperparameters,
        **extra,  # type: ignore[arg-type]
    )


def run(job: TrainingJob, model_path: Path) -> list[ProgressMessage]:
    messages: list[ProgressMessage] = []
    run_job(job, messages.append, model_path)
    return messages


def steps_of(messages: list[ProgressMessage]) -> list[EpisodeFinished]:
    return [m for m in messages if isinstance(m, EpisodeFinished)]


def results_of(messages: list[ProgressMessage]) -> list[EvaluationFinished]:
    return [m for m in messages if isinstance(m, EvaluationFinished)]


@pytest.mark.parametrize(
    ("algorithm", "environment", "episodes"),
    [
        ("dqn", "CartPole-v1", 4),
        ("a2c", "CartPole-v1", 4),
        ("ppo", "CartPole-v1", 4),
        ("ddpg", "Pendulum-v1", 1),
        ("td3", "Pendulum-v1", 1),
        ("sac", "Pendulum-v1", 1),
        ("ppo", "Acrobot-v1", 2),
        ("dqn", "MountainCar-v0", 1),
        ("a2c", "MountainCarContinuous-v0", 1),
    ],
)
def test_trains_exactly_the_episodes_asked_saves_then_evaluates(
    algorithm: str, environment: str, episodes: int, tmp_path: Path
) -> None:
    messages = run(make_job(algorithm, environment, episodes), tmp_path / "model.zip")
    steps, results = steps_of(messages), results_of(messages)
    assert [s.episode for s in steps] == list(range(1, episodes + 1))
    assert all(s.length > 0 for s in steps)
    assert steps[-1].metrics["steps_per_second"] > 0
    assert [r.episode for r in results] == [1, 2]
    assert all(r.length > 0 and r.duration_ms > 0 for r in results)
    saved = [m for m in messages if isinstance(m, ModelSaved)]
    assert len(saved) == 1 and Path(saved[0].path).is_file()
    # Training, then the checkpoint, then evaluation; never interleaved.
    assert messages.index(steps[-1]) < messages.index(saved[0]) < messages.index(results[0])


def test_losses_and_entropy_come_from_the_sb3_logger(tmp_path: Path) -> None:
    steps = steps_of(run(make_job("ppo", "CartPole-v1", 40), tmp_path / "m.zip"))
    assert {"loss", "entropy_loss", "value_loss", "policy_loss"} <= set(steps[-1].metrics)


def test_a_timestep_budget_stops_training(tmp_path: Path) -> None:
    job = replace(make_job("ppo", "CartPole-v1", None), timesteps=2048)
    messages = run(job, tmp_path / "m.zip")
    saved = next(m for m in messages if isinstance(m, ModelSaved))
    # PPO collects whole rollouts (8 envs x 32 steps), so it stops at the first rollout past the budget.
    assert 2048 <= saved.timesteps < 2048 + 256
    assert all(s.timesteps <= saved.timesteps for s in steps_of(messages))


def test_same_seed_same_results(tmp_path: Path) -> None:
    first = run(make_job("dqn", "CartPole-v1", 3), tmp_path / "a.zip")
    second = run(make_job("dqn", "CartPole-v1", 3), tmp_path / "b.zip")
    assert [(s.reward, s.length) for s in steps_of(first)] == [(s.reward, s.length) for s in steps_of(second)]
    assert [(r.reward, r.length) for r in results_of(first)] == [(r.reward, r.length) for r in results_of(second)]


def test_training_continues_from_a_checkpoint_and_a_model_can_be_evaluated(tmp_path: Path) -> None:
    first = run(make_job("ppo", "CartPole-v1", 5), tmp_path / "first.zip")
    first_saved = next(m for m in first if isinstance(m, ModelSaved))
    resumed_job = replace(make_job("ppo", "CartPole-v1", 5), source_model=first_saved.path)
    resumed = run(resumed_job, tmp_path / "second.zip")
    # The step counter carries on from the checkpoint.
    assert steps_of(resumed)[0].timesteps > first_saved.timesteps

    evaluation = replace(
        make_job("ppo", "CartPole-v1", None, evaluations=5), kind=RunKind.EVALUATE.value, source_model=first_saved.path
    )
    messages = run(evaluation, tmp_path / "unused.zip")
    assert steps_of(messages) == [] and not (tmp_path / "unused.zip").exists()
    assert len(results_of(messages)) == 5
    # Deterministic and seeded: the same model evaluated twice gives the same episodes.
    again = run(evaluation, tmp_path / "unused.zip")
    assert sorted(r.reward for r in results_of(again)) == sorted(r.reward for r in results_of(messages))


def test_training_leaves_no_log_folders_behind(tmp_path: Path) -> None:
    before = {p.name for p in Path(tempfile.gettempdir()).glob("SB3-*")}
    run(make_job("ppo", "CartPole-v1", 1, 1), tmp_path / "m.zip")
    assert {p.name for p in Path(tempfile.gettempdir()).glob("SB3-*")} == before
