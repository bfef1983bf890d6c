"""Reward regression on seeded streams with a known answer: it opens on an injected drop, near where
the drop began, stays quiet on clean streams and small drops, and resolves when the rewards recover."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tars.domain.insights import Action, Finding, FindingKind, FindingState, Severity, Subject
from tars.insight.detectors.ranks import Floats
from tars.insight.detectors.regression import Alternative, RegressionSettings, RewardRegression, _beta_cdf, _tables
from tests.insight.detectors.synthetic import cartpole, pendulum

SUBJECT = Subject("ppo", "CartPole-v1", "eu-west-1")


def feed(detector: RewardRegression, rewards: Floats, batch: int = 10, run_id: str | None = None) -> list[Finding]:
    found: list[Finding] = []
    for start in range(0, rewards.size, batch):
        found += detector.observe(rewards[start : start + batch], run_id=run_id)
    return found


def opened(findings: list[Finding]) -> list[Finding]:
    return [finding for finding in findings if finding.state is FindingState.OPEN]


# Up to 16 rewards at a time run the CUSUM in plain Python, more as arrays: both ways.
@pytest.mark.parametrize("batch", [1, 10, 50, 1000])
def test_a_cartpole_drop_opens_a_finding_with_its_evidence(batch: int) -> None:
    rng = np.random.default_rng(1)
    before, after = cartpole(rng, 400), cartpole(rng, 300, failure_share=0.4)
    findings = feed(RewardRegression(SUBJECT), np.concatenate((before, after)), batch=batch)
    first = opened(findings)[0]
    assert first.kind is FindingKind.REWARD_REGRESSION
    assert first.subject == SUBJECT
    # Detected within 100 evaluations of the drop (a batch of 1,000 is seen whole, at its end).
    assert 400 < first.last_seen <= max(400 + 100, min(batch, 700))
    assert abs(first.first_seen - 401) <= 30  # and dated near where it began
    true_drop = 1 - after.mean() / before.mean()
    evidence = first.evidence
    assert evidence["p_value"] < 1e-3  # type: ignore[operator]
    assert first.confidence == pytest.approx(1 - evidence["p_value"])  # type: ignore[operator]
    # At the alarm, the stretch that crossed the threshold overstates the drop (it was chosen for being
    # bad, and it is short: here 23 rewards); the updates that follow converge on it.
    assert evidence["relative_drop"] == pytest.approx(true_drop, abs=0.25)
    assert opened(findings)[-1].evidence["relative_drop"] == pytest.approx(true_drop, abs=0.05)
    assert first.impact == evidence["relative_drop"]
    assert 0 < evidence["effect_size"] <= 1  # type: ignore[operator]
    assert evidence["before"]["n"] == evidence["reference_size"] >= 200  # type: ignore[index]
    assert evidence["after"]["n"] == evidence["after_size"] >= 10  # type: ignore[index]
    assert evidence["after"]["mean"] < evidence["before"]["mean"]  # type: ignore[index,operator]
    assert evidence["change_position"] == first.first_seen
    assert first.severity is (Severity.CRITICAL if first.impact >= 0.3 else Severity.WARNING)
    assert first.recommendation.action is Action.INVESTIGATE  # one model throughout


def test_a_pendulum_drop_opens_a_finding() -> None:
    rng = np.random.default_rng(2)
    rewards = np.concatenate((pendulum(rng, 500, mean=-300.0), pendulum(rng, 400, mean=-420.0)))
    first = opened(feed(RewardRegression(SUBJECT), rewards))[0]
    assert 500 < first.last_seen <= 650
    assert first.evidence["relative_drop"] == pytest.approx(0.4, abs=0.15)


@pytest.mark.parametrize("seed", range(40))
def test_clean_streams_raise_nothing(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    rewards = cartpole(rng, 1000) if seed % 2 else pendulum(rng, 1000, mean=-float(rng.uniform(150, 1300)))
    assert feed(RewardRegression(SUBJECT), rewards) == []


def test_an_improvement_is_not_a_regression() -> None:
    rng = np.random.default_rng(5)
    rewards = np.concatenate((pendulum(rng, 400, mean=-600.0), pendulum(rng, 600, mean=-300.0)))
    assert feed(RewardRegression(SUBJECT), rewards) == []


def test_a_drop_below_the_floor_is_not_news_however_significant() -> None:
    """A 5 % drop of a quiet stream is 5 standard deviations: certain, and still not worth a finding."""
    rng = np.random.default_rng(6)
    quiet = np.concatenate((rng.normal(100.0, 1.0, 400), rng.normal(95.0, 1.0, 600)))
    assert feed(RewardRegression(SUBJECT), quiet) == []
    louder = np.concatenate((rng.normal(100.0, 1.0, 400), rng.normal(85.0, 1.0, 600)))
    assert opened(feed(RewardRegression(SUBJECT), louder))


def test_it_resolves_when_the_rewards_recover() -> None:
    rng = np.random.default_rng(7)
    rewards = np.concatenate((cartpole(rng, 400), cartpole(rng, 200, failure_share=0.5), cartpole(rng, 300)))
    findings = feed(RewardRegression(SUBJECT), rewards)
    states = [finding.state for finding in findings]
    assert states[0] is FindingState.OPEN
    assert states.count(FindingState.RESOLVED) == 1
    resolved = findings[states.index(FindingState.RESOLVED)]
    assert 600 + 50 <= resolved.last_seen <= 600 + 150  # a recovery window after the recovery
    assert resolved.first_seen == findings[0].first_seen
    assert resolved.evidence["relative_drop"] < 0.05  # type: ignore[operator]
    # Open findings in between are updates of the same one, not new ones.
    assert {finding.first_seen for finding in findings} == {findings[0].first_seen}


def test_an_open_regression_is_updated_as_evidence_grows() -> None:
    rng = np.random.default_rng(8)
    rewards = np.concatenate((cartpole(rng, 400), cartpole(rng, 400, failure_share=0.5)))
    found = opened(feed(RewardRegression(SUBJECT), rewards))
    assert len(found) >= 5  # every update_every (50) evaluations
    assert [finding.evidence["after_size"] for finding in found] == sorted(
        finding.evidence["after_size"]  # type: ignore[misc]
        for finding in found
    )
    assert found[-1].evidence["p_value"] <= found[0].evidence["p_value"]  # type: ignore[operator]


def test_too_little_data_is_no_finding() -> None:
    detector = RewardRegression(SUBJECT)
    rng = np.random.default_rng(9)
    # Fewer rewards than the reference needs: even a collapse to zero says nothing yet.
    assert feed(detector, np.concatenate((cartpole(rng, 150), np.full(49, 10.0)))) == []
    assert detector.observe([]) == []


def test_non_finite_rewards_are_skipped_and_counted() -> None:
    rng = np.random.default_rng(10)
    rewards = cartpole(rng, 800)
    rewards[::37] = math.nan
    rewards[5::41] = math.inf
    rewards[7::43] = -math.inf
    detector = RewardRegression(SUBJECT)
    assert feed(detector, rewards) == []
    assert detector.skipped == int((~np.isfinite(rewards)).sum())
    with_drop = np.concatenate((rewards, cartpole(rng, 300, failure_share=0.5), [math.nan]))
    found = opened(feed(RewardRegression(SUBJECT), with_drop))
    assert found and found[0].evidence["skipped_non_finite"] > 0  # type: ignore[operator]


def test_a_new_run_that_regressed_is_rolled_back_to_the_one_before() -> None:
    rng = np.random.default_rng(11)
    detector = RewardRegression(SUBJECT)
    feed(detector, cartpole(rng, 400), run_id="run-good")
    found = opened(feed(detector, cartpole(rng, 300, failure_share=0.5), run_id="run-bad"))
    assert found[0].recommendation.action is Action.ROLLBACK
    assert found[0].recommendation.parameters == {"run_id": "run-good", "regressed_run_id": "run-bad"}
    assert (found[0].evidence["baseline_run"], found[0].evidence["current_run"]) == ("run-good", "run-bad")


def test_one_at_a_time_finds_what_batches_find() -> None:
    rng = np.random.default_rng(12)
    rewards = np.concatenate((pendulum(rng, 450), pendulum(rng, 300, mean=-600.0)))
    one = opened(feed(RewardRegression(SUBJECT), rewards, batch=1))[0]
    many = opened(feed(RewardRegression(SUBJECT), rewards, batch=100))[0]
    assert abs(one.first_seen - many.first_seen) <= 10
    assert 450 < one.last_seen <= many.last_seen + 5


def test_a_perfect_agent_is_not_flagged_for_one_failure_but_is_for_many() -> None:
    detector = RewardRegression(SUBJECT)
    assert feed(detector, np.full(400, 500.0)) == []
    assert feed(detector, np.array([20.0, *[500.0] * 99])) == []
    rng = np.random.default_rng(13)
    assert opened(feed(detector, cartpole(rng, 100, failure_share=0.4)))


@pytest.mark.parametrize("alternative", RegressionSettings().alternatives)
def test_every_alternative_alone_finds_a_large_drop(alternative: Alternative) -> None:
    rng = np.random.default_rng(14)
    rewards = np.concatenate((cartpole(rng, 400), cartpole(rng, 300, failure_share=0.6)))
    settings = RegressionSettings(alternatives=(alternative,))
    first = opened(feed(RewardRegression(SUBJECT, settings), rewards))[0]
    assert first.evidence["alternative"] == f"Beta({alternative.a:g}, {alternative.b:g})"
    assert first.evidence["statistic"] >= alternative.threshold  # type: ignore[operator]


@pytest.mark.parametrize(
    "a, b, threshold", [(1.5, 1.0, 10.0), (0.5, 0.8, 10.0), (1.0, 1.0, 10.0), (0.0, 2.0, 10.0), (0.6, 1.3, 0.0)]
)
def test_an_alternative_that_is_not_a_way_of_getting_worse_is_refused(a: float, b: float, threshold: float) -> None:
    with pytest.raises(ValueError, match="alternative"):
        Alternative(a, b, threshold)


def test_an_empty_bank_is_refused() -> None:
    with pytest.raises(ValueError, match="bank"):
        RegressionSettings(alternatives=())


def test_the_bank_names_the_alternative_that_fits_the_change() -> None:
    """Perfect episodes getting shorter (fewer of the best rewards, no more failures) is what Beta(0.8, 2.3)
    is for; a share of episodes failing outright (more of the worst, the rest as before), the others."""
    rng = np.random.default_rng(15)
    # perfect 500s from 80 % of the episodes to 30 %, the others shorter than they were (Beta(1, 1.5))
    fewer_perfect = np.where(rng.random(300) < 0.3, 500.0, 500.0 - 350.0 * rng.beta(1.0, 1.5, 300))
    shorter = np.concatenate((cartpole(rng, 400, failure_share=0.02), fewer_perfect))
    first = opened(feed(RewardRegression(SUBJECT), shorter))[0]
    assert first.evidence["alternative"] == "Beta(0.8, 2.3)"
    stuck = pendulum(rng, 300, mean=-300.0)
    failing = rng.random(300) < 0.15
    stuck[failing] = -900.0 * rng.gamma(25.0, 1 / 25.0, int(failing.sum()))
    first = opened(feed(RewardRegression(SUBJECT), np.concatenate((pendulum(rng, 400, mean=-300.0), stuck))))[0]
    assert first.evidence["alternative"] in {"Beta(0.6, 1.3)", "Beta(0.75, 1)"}


@pytest.mark.parametrize("alternative", RegressionSettings().alternatives)
@pytest.mark.parametrize("size", [200, 333, 500])
def test_log_likelihood_ratios_drift_down_before_a_change_and_up_after(alternative: Alternative, size: int) -> None:
    """Before a change each of the size + 1 places among the reference is equally likely: the mean
    log-likelihood ratio is minus a Kullback-Leibler divergence, below 0. Drawn from the alternative, above 0."""
    cdf, untied, spread = _tables(size, alternative.a, alternative.b)
    assert cdf[0] == 0.0 and cdf[-1] == pytest.approx(1.0)
    assert np.all(np.diff(cdf) > 0)
    assert untied.mean() < -0.01
    assert spread > 0
    places = np.diff(cdf)  # the alternative's probability of each place
    assert float((places * untied).sum()) > 0.01


def test_the_beta_distribution_function_matches_closed_forms_and_known_values() -> None:
    points = np.linspace(0.0, 1.0, 11)
    assert _beta_cdf(points, 0.5, 1.0) == pytest.approx(np.sqrt(points))
    assert _beta_cdf(points, 1.0, 2.0) == pytest.approx(1 - (1 - points) ** 2)
    # I_u(0.5, 2) = u^0.5 (3 - u) / 2 (integrating u^-0.5 (1 - u) and dividing by B(0.5, 2) = 4/3)
    assert _beta_cdf(points, 0.5, 2.0) == pytest.approx(np.sqrt(points) * (3 - points) / 2, abs=1e-6)


def test_a_reward_tied_with_the_whole_reference_is_no_evidence() -> None:
    detector = RewardRegression(SUBJECT)
    feed(detector, np.full(300, 500.0))
    assert detector._ratios(np.array([500.0])) == pytest.approx(np.zeros((3, 1)))
    assert np.all(detector._ratios(np.array([20.0])) > 0)


@pytest.mark.parametrize("seed", range(20))
def test_uniform_noise_raises_nothing(seed: int) -> None:
    """Ranks alone decide for continuous rewards: uniform noise stands for any continuous distribution."""
    rewards = np.random.default_rng(200 + seed).uniform(50.0, 100.0, 1000)
    assert feed(RewardRegression(SUBJECT), rewards) == []


def test_the_reference_takes_in_every_reward_a_block_at_a_time_up_to_its_size() -> None:
    """Sequential ranks, a block at a time: each reward is scored against every reward before its block
    (the newest reference_size), those of a current excursion too."""
    rng = np.random.default_rng(16)
    rewards = pendulum(rng, 1234, mean=-500.0)
    detector = RewardRegression(SUBJECT)
    assert feed(detector, rewards) == []
    settings = detector.settings
    assert detector._window.size == settings.reference_size
    pending = (1234 - settings.warmup_size) % settings.refresh_every
    assert np.array_equal(detector._window, rewards[1234 - pending - settings.reference_size : 1234 - pending])
