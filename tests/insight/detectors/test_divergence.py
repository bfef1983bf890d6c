"""Region divergence: the region that does worse than the same agent elsewhere, and only that one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tars.domain.insights import Action, Finding, FindingKind, FindingState, Subject
from tars.domain.regions import REGIONS
from tars.insight.detectors.divergence import DivergenceSettings, RegionDivergence
from tests.insight.detectors.synthetic import cartpole, pendulum


def feed(detector: RegionDivergence, rounds: int, rng: np.random.Generator, worse: dict[str, float]) -> list[Finding]:
    """``rounds`` batches of 10 Pendulum rewards per region; a region in ``worse`` has its mean that much lower."""
    found: list[Finding] = []
    for _ in range(rounds):
        for region in REGIONS:
            found += detector.observe(region, pendulum(rng, 10, mean=-300.0 * (1 + worse.get(region, 0.0))))
    return found


def test_the_worse_region_and_only_it_diverges() -> None:
    rng = np.random.default_rng(1)
    found = feed(RegionDivergence("ddpg", "Pendulum-v1"), 10, rng, {"eu-west-1": 0.3})
    assert found
    assert {finding.subject for finding in found} == {Subject("ddpg", "Pendulum-v1", "eu-west-1")}
    first = found[0]
    assert first.kind is FindingKind.REGION_DIVERGENCE and first.state is FindingState.OPEN
    evidence = first.evidence
    assert evidence["p_value_adjusted"] >= evidence["p_value"]  # type: ignore[operator]
    assert evidence["p_value_adjusted"] < 1e-3  # type: ignore[operator]
    assert evidence["regions_tested"] == 4
    assert evidence["relative_drop"] == pytest.approx(0.3, abs=0.12)
    assert evidence["after"]["n"] >= 30 and evidence["before"]["n"] >= 90  # type: ignore[index,operator]
    assert first.recommendation.action is Action.INVESTIGATE_REGION
    assert first.recommendation.parameters == {"region": "eu-west-1"}


@pytest.mark.parametrize("seed", range(20))
def test_regions_alike_raise_nothing(seed: int) -> None:
    rng = np.random.default_rng(50 + seed)
    detector = RegionDivergence("ppo", "CartPole-v1")
    found = [f for _ in range(50) for region in REGIONS for f in detector.observe(region, cartpole(rng, 10))]
    assert found == []


def test_it_resolves_when_the_region_catches_up() -> None:
    rng = np.random.default_rng(2)
    detector = RegionDivergence("ddpg", "Pendulum-v1")
    assert feed(detector, 10, rng, {"ap-southeast-1": 0.5})
    later = feed(detector, 30, rng, {})
    assert [finding.state for finding in later][-1] is FindingState.RESOLVED
    assert feed(detector, 5, rng, {}) == []


def test_too_little_data_or_a_single_region_is_no_finding() -> None:
    rng = np.random.default_rng(3)
    detector = RegionDivergence("ddpg", "Pendulum-v1", DivergenceSettings(check_every=1))
    assert [f for _ in range(30) for f in detector.observe("us-west-2", pendulum(rng, 10))] == []
    # A second region, far worse, but with fewer than min_per_region rewards: not tested yet.
    assert detector.observe("eu-west-1", pendulum(rng, 29, mean=-3000.0)) == []
    assert detector.observe("eu-west-1", pendulum(rng, 1, mean=-3000.0))  # the 30th: now it is


def test_non_finite_rewards_are_skipped() -> None:
    detector = RegionDivergence("ddpg", "Pendulum-v1")
    assert detector.observe("us-west-2", [math.nan, math.inf] * 40) == []
    assert detector.assess() == []
