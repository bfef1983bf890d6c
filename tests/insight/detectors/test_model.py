"""Model regression: a new run's evaluations against the previous run's, on the few a run has."""

from __future__ import annotations

import numpy as np
import pytest

from tars.domain.insights import Action, FindingKind, FindingState
from tars.insight.detectors.model import ModelRegression
from tests.insight.detectors.synthetic import cartpole, pendulum


def test_a_worse_run_is_rolled_back_to_the_previous_one() -> None:
    rng = np.random.default_rng(1)
    detector = ModelRegression("ddpg", "Pendulum-v1")
    assert detector.observe("run-1", pendulum(rng, 10, mean=-200.0)) == []
    [finding] = detector.observe("run-2", pendulum(rng, 10, mean=-400.0))
    assert finding.kind is FindingKind.MODEL_REGRESSION and finding.state is FindingState.OPEN
    assert finding.subject.run_id == "run-2"
    assert finding.recommendation.action is Action.ROLLBACK
    assert finding.recommendation.parameters == {"run_id": "run-1", "regressed_run_id": "run-2"}
    evidence = finding.evidence
    assert (evidence["previous_run"], evidence["current_run"]) == ("run-1", "run-2")
    assert "exact" in str(evidence["method"])
    assert evidence["p_value"] < 0.01  # type: ignore[operator]
    assert evidence["relative_drop"] == pytest.approx(1.0, abs=0.35)
    assert evidence["before"]["n"] == evidence["after"]["n"] == 10  # type: ignore[index]


@pytest.mark.parametrize("seed", range(30))
def test_a_run_like_the_last_raises_nothing(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    detector = ModelRegression("ppo", "CartPole-v1")
    found = [f for run in range(5) for f in detector.observe(f"run-{run}", cartpole(rng, 10))]
    assert found == []


def test_ten_evaluations_cannot_tell_three_failures_from_luck() -> None:
    """CartPole: 10 perfect episodes, then 7 perfect and 3 failures. A 28 % lower mean, but a split like
    that comes by chance one time in ten (the exact test with ties: p = C(10,3)/C(20,3) = 0.105)."""
    detector = ModelRegression("ppo", "CartPole-v1")
    detector.observe("run-1", [500.0] * 10)
    assert detector.observe("run-2", [500.0] * 7 + [20.0, 35.0, 60.0]) == []
    # More evaluations of both, the new model failing as often: 9 failures of 30, none of 30 before,
    # comes by chance C(30,9)/C(60,9) < 0.001 of the time.
    assert detector.observe("run-1", [500.0] * 20) == []
    assert detector.observe("run-2", [500.0] * 14 + [25.0, 40.0, 55.0, 30.0, 45.0, 70.0])


def test_too_few_evaluations_or_no_previous_run_is_no_finding() -> None:
    detector = ModelRegression("ppo", "CartPole-v1")
    assert detector.observe("run-1", [500.0] * 4) == []
    assert detector.observe("run-2", [10.0] * 10) == []  # run-1 has 4 evaluations: too few
    assert detector.observe("run-1", [500.0]) != []  # its fifth


def test_it_resolves_when_a_newer_run_supersedes_it_and_compares_with_the_one_named() -> None:
    rng = np.random.default_rng(2)
    detector = ModelRegression("ddpg", "Pendulum-v1")
    detector.observe("run-1", pendulum(rng, 10, mean=-200.0))
    assert detector.observe("run-2", pendulum(rng, 10, mean=-500.0))
    # run-3 continues from run-1: compared with it, not with the regressed run-2.
    [resolved] = detector.observe("run-3", pendulum(rng, 10, mean=-200.0), previous_run_id="run-1")
    assert resolved.state is FindingState.RESOLVED
    assert resolved.subject.run_id == "run-2" and resolved.evidence["superseded_by"] == "run-3"
    assert detector.observe("run-3", pendulum(rng, 10, mean=-200.0)) == []


def test_non_finite_rewards_are_skipped() -> None:
    detector = ModelRegression("ppo", "CartPole-v1")
    detector.observe("run-1", [500.0] * 10)
    assert detector.observe("run-2", [float("nan")] * 10) == []
