"""Training anomalies from the episodes a worker reports."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from tars.domain.insights import Action, Finding, FindingKind, FindingState, Severity, Subject
from tars.domain.progress import EpisodeFinished
from tars.insight.detectors.training import TrainingAnomalies

SUBJECT = Subject("ppo", "CartPole-v1", run_id="run-1")


def episodes(rewards: list[float], start: int = 1, **metrics: list[float]) -> Iterator[EpisodeFinished]:
    for offset, reward in enumerate(rewards):
        yield EpisodeFinished(
            episode=start + offset,
            reward=reward,
            length=200,
            timesteps=200 * (start + offset),
            metrics={name: values[offset] for name, values in metrics.items()},
        )


def kinds(findings: list[Finding]) -> list[tuple[FindingKind, FindingState]]:
    return [(finding.kind, finding.state) for finding in findings]


def rising(n: int, rng: np.random.Generator) -> list[float]:
    """Rewards of a run that learns: 20 up to 500, with noise."""
    return list(np.clip(20 + 480 * np.linspace(0, 1, n) + rng.normal(0, 30, n), 8, 500))


def test_a_non_finite_loss_is_critical_and_clears_after_finite_ones() -> None:
    detector = TrainingAnomalies(SUBJECT)
    losses = [0.5] * 30 + [math.nan, math.inf] + [0.4] * 25
    found = detector.observe(list(episodes([100.0] * 57, loss=losses, value_loss=[1.0] * 57)))
    assert kinds(found) == [
        (FindingKind.NON_FINITE_LOSS, FindingState.OPEN),
        (FindingKind.NON_FINITE_LOSS, FindingState.RESOLVED),
    ]
    opened, resolved = found
    assert opened.severity is Severity.CRITICAL and opened.first_seen == opened.last_seen == 31
    assert opened.evidence["losses"] == "loss"
    assert opened.recommendation.action is Action.RETRAIN
    assert resolved.last_seen == 32 + 20  # twenty finite episodes in a row


def test_a_value_loss_explosion_opens_where_it_began_and_resolves() -> None:
    rng = np.random.default_rng(1)
    values = [*rng.uniform(0.8, 1.2, 60), 5e3, 2e4, 8e4, 1e5, *rng.uniform(0.8, 1.2, 10)]
    found = TrainingAnomalies(SUBJECT).observe(list(episodes([100.0] * len(values), value_loss=values)))
    assert kinds(found) == [
        (FindingKind.VALUE_LOSS_EXPLOSION, FindingState.OPEN),
        (FindingKind.VALUE_LOSS_EXPLOSION, FindingState.RESOLVED),
    ]
    assert found[0].first_seen == 61 and found[0].last_seen == 63  # sustained for three episodes
    assert found[0].evidence["ratio"] > 100  # type: ignore[operator]
    assert found[1].last_seen == 67


def test_a_value_loss_that_grows_with_the_returns_is_no_explosion() -> None:
    rng = np.random.default_rng(2)
    values = list(np.geomspace(0.5, 80.0, 400) * rng.uniform(0.7, 1.3, 400))
    assert TrainingAnomalies(SUBJECT).observe(list(episodes(rising(400, rng), value_loss=values))) == []


def test_entropy_collapse_without_learning_is_flagged() -> None:
    rng = np.random.default_rng(3)
    entropy = list(np.linspace(0.69, 0.01, 150))
    flat = list(rng.normal(40.0, 5.0, 150))
    found = TrainingAnomalies(SUBJECT).observe(list(episodes(flat, entropy_loss=[-value for value in entropy])))
    collapse = [f for f in found if f.kind is FindingKind.ENTROPY_COLLAPSE]
    assert collapse and collapse[0].state is FindingState.OPEN
    assert collapse[0].recommendation.parameters["ent_coef"] == 0.01
    assert collapse[0].evidence["entropy"] < 0.1 * collapse[0].evidence["initial_entropy"]  # type: ignore[operator]


def test_entropy_falling_while_the_reward_rises_is_learning() -> None:
    rng = np.random.default_rng(4)
    entropy_loss = list(-np.linspace(0.69, 0.01, 300))
    found = TrainingAnomalies(SUBJECT, target_reward=475.0).observe(
        list(episodes(rising(300, rng), entropy_loss=entropy_loss))
    )
    assert found == []


def test_a_stall_is_flagged_and_clears_when_learning_resumes() -> None:
    rng = np.random.default_rng(5)
    flat = list(rng.normal(100.0, 20.0, 400))
    detector = TrainingAnomalies(SUBJECT, target_reward=475.0)
    found = detector.observe(list(episodes(flat)))
    assert kinds(found) == [(FindingKind.LEARNING_STALL, FindingState.OPEN)]
    assert found[0].severity is Severity.INFO
    assert found[0].evidence["episodes_without_improvement"] >= 200  # type: ignore[operator]
    later = detector.observe(list(episodes(list(rng.normal(300.0, 20.0, 60)), start=401)))
    assert kinds(later) == [(FindingKind.LEARNING_STALL, FindingState.RESOLVED)]


def test_a_solved_run_does_not_stall() -> None:
    rng = np.random.default_rng(6)
    solved = list(np.clip(rng.normal(495.0, 5.0, 500), 0, 500))
    assert TrainingAnomalies(SUBJECT, target_reward=475.0).observe(list(episodes(solved))) == []


def test_a_learning_run_does_not_stall() -> None:
    rng = np.random.default_rng(7)
    assert TrainingAnomalies(SUBJECT).observe(list(episodes(rising(600, rng)))) == []


@pytest.mark.parametrize(
    ("history", "speed", "flagged"),
    [
        ([1000.0, 1050.0, 980.0, 1020.0], 500.0, True),
        ([1000.0, 1050.0, 980.0, 1020.0], 900.0, False),  # 10 % slower: within the floor
        ([1000.0, 1000.0], 100.0, False),  # too little history
    ],
)
def test_steps_per_second_against_the_agents_history(history: list[float], speed: float, flagged: bool) -> None:
    detector = TrainingAnomalies(SUBJECT, throughput_history=history)
    found = detector.observe(list(episodes([50.0] * 20, steps_per_second=[speed] * 20)))
    assert bool(found) is flagged
    assert detector.steps_per_second == speed
    if flagged:
        assert kinds(found) == [(FindingKind.THROUGHPUT_DROP, FindingState.OPEN)]
        assert found[0].first_seen == 10  # after the warm-up episodes
        assert found[0].impact == pytest.approx(0.5, abs=0.02)


def test_non_finite_rewards_and_metrics_do_not_break_the_rules() -> None:
    detector = TrainingAnomalies(SUBJECT, throughput_history=[1000.0] * 5)
    rewards = [math.nan if n % 7 == 0 else 100.0 for n in range(60)]
    nan = [math.nan] * 60
    found = detector.observe(list(episodes(rewards, entropy_loss=nan, steps_per_second=nan, critic_loss=nan)))
    assert kinds(found) == [(FindingKind.NON_FINITE_LOSS, FindingState.OPEN)]
    assert found[0].evidence["losses"] == "critic_loss, entropy_loss"
