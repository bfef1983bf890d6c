"""The shared statistics against their definitions: full enumeration, direct sums, textbook values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from tars.insight.detectors import ranks


def test_midranks_share_the_mean_of_tied_ranks() -> None:
    found, ties = ranks.midranks(np.array([500.0, 20.0, 500.0, 30.0, 500.0]))
    assert found.tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]
    assert sorted(ties.tolist()) == [1, 1, 3]


def _enumerated_p(after: np.ndarray, before: np.ndarray) -> float:
    """P(rank sum of `after` <= observed) over every split of the pooled values."""
    pooled = np.concatenate((after, before))
    found, _ = ranks.midranks(pooled)
    observed = found[: after.size].sum()
    splits = list(itertools.combinations(range(pooled.size), after.size))
    return sum(found[list(split)].sum() <= observed + 1e-9 for split in splits) / len(splits)


@pytest.mark.parametrize("seed", range(8))
def test_the_exact_test_is_the_permutation_distribution_ties_and_all(seed: int) -> None:
    rng = np.random.default_rng(seed)
    after = np.where(rng.random(7) < 0.4, rng.integers(10, 30, 7) // 5 * 5, 500).astype(float)
    before = np.where(rng.random(9) < 0.15, rng.integers(10, 30, 9) // 5 * 5, 500).astype(float)
    test = ranks.rank_test(after, before)
    assert test.exact
    assert test.p_value == pytest.approx(_enumerated_p(after, before), abs=1e-12)


def test_the_normal_approximation_agrees_with_the_exact_tail_beyond_50() -> None:
    rng = np.random.default_rng(3)
    after, before = rng.normal(0.0, 1.0, 30), rng.normal(0.6, 1.0, 30)
    approximate = ranks.rank_test(after, before)
    pooled_ranks, _ = ranks.midranks(np.concatenate((after, before)))
    exact = ranks._exact_lower_tail(pooled_ranks, after.size, float(pooled_ranks[:30].sum()))
    assert not approximate.exact
    assert 0.0 < exact < 0.05
    assert approximate.p_value == pytest.approx(exact, rel=0.1)


def test_cliffs_delta_runs_from_alike_to_entirely_below() -> None:
    assert ranks.rank_test(np.array([1.0, 2.0]), np.array([5.0, 6.0, 7.0])).cliffs_delta == 1.0
    assert ranks.rank_test(np.array([5.0, 5.0]), np.array([5.0, 5.0])).cliffs_delta == 0.0
    assert ranks.rank_test(np.array([5.0, 5.0]), np.array([5.0, 5.0])).p_value == 1.0
    assert ranks.rank_test(np.array([]), np.array([1.0])).p_value == 1.0


def test_holm_steps_down() -> None:
    assert ranks.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert ranks.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_fisher_is_the_hypergeometric_tail() -> None:
    # 7 of 20 recent failed, 3 of 80 before: P(X >= 7), X hypergeometric(100, 10 failures, 20 drawn).
    direct = sum(math.comb(10, x) * math.comb(90, 20 - x) for x in range(7, 11)) / math.comb(100, 20)
    assert ranks.fisher_greater(7, 20, 3, 80) == pytest.approx(direct, rel=1e-9)
    assert ranks.fisher_greater(0, 20, 0, 80) == 1.0


def test_wilson_interval() -> None:
    low, high = ranks.wilson_interval(3, 40)
    assert (low, high) == pytest.approx((0.02584, 0.19865), abs=1e-4)
    assert ranks.wilson_interval(0, 0) == (0.0, 1.0)


def test_relative_drop_falls_back_on_the_spread_near_zero() -> None:
    assert ranks.relative_drop(-200.0, -260.0, 50.0) == pytest.approx(0.3)
    assert ranks.relative_drop(0.5, -4.5, 10.0) == pytest.approx(0.5)
