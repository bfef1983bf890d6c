"""The statistics the detectors share: rank tests, tail probabilities and corrections.

Rank-based throughout: RL rewards are bimodal with an atom at the cap (CartPole's 500) or negative
and skewed (Pendulum), so tests on ranks keep their error rates where a t-test's would not, and
mid-ranks make the many ties harmless. Written on numpy and ``math`` alone: nothing here needs more
than a normal tail, a log-gamma and a sort.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tars.domain.insights import Summary

Floats = npt.NDArray[np.float64]

# Below this many observations in both samples together, a rank test's p-value is computed exactly
# (the permutation distribution of the rank sum, ties included); above, the normal approximation
# with tie and continuity corrections is within a few percent of it even far into the tail.
EXACT_UP_TO = 50


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def as_floats(values: npt.ArrayLike) -> Floats:
    return np.asarray(values, dtype=np.float64)


def summary(values: Floats) -> Summary:
    """Before/after summaries as findings report them."""
    if values.size == 0:
        return {"n": 0, "mean": None, "median": None}
    return {"n": int(values.size), "mean": float(values.mean()), "median": float(np.median(values))}


def midranks(values: Floats) -> tuple[Floats, npt.NDArray[np.int64]]:
    """Ranks from 1, ties sharing the mean of their ranks; and the size of each group of ties."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_group = np.empty(values.size, dtype=bool)
    starts_group[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts_group[1:])
    starts = np.flatnonzero(starts_group)
    counts = np.diff(np.append(starts, values.size))
    group_rank = starts + (counts + 1) / 2.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(group_rank, counts)
    return ranks, counts


@dataclass(frozen=True)
class RankTest:
    """A one-sided Mann-Whitney test that ``after`` is stochastically smaller than ``before``."""

    u: float  # pairs (after, before) with after > before, ties counting one half
    p_value: float
    # P(after < before) - P(after > before): 0 when alike, 1 when every after is below every before.
    cliffs_delta: float
    exact: bool


def rank_test(after: Floats, before: Floats) -> RankTest:
    if after.size == 0 or before.size == 0:
        return RankTest(u=0.0, p_value=1.0, cliffs_delta=0.0, exact=True)
    ranks, ties = midranks(np.concatenate((after, before)))
    return rank_test_in(ranks, ties, float(ranks[: after.size].sum()), after.size)


def rank_test_in(ranks: Floats, ties: npt.NDArray[np.int64], rank_sum: float, n_after: int) -> RankTest:
    """The test of ``n_after`` of the pooled values (their ranks summing to ``rank_sum``) against the
    rest: several subsets of one pool are tested after ranking it once."""
    total = ranks.size
    n_before = total - n_after
    u = rank_sum - n_after * (n_after + 1) / 2.0
    delta = 1.0 - 2.0 * u / (n_after * n_before)
    if total <= EXACT_UP_TO:
        return RankTest(u, _exact_lower_tail(ranks, n_after, rank_sum), delta, exact=True)
    tie_term = float((ties.astype(np.float64) ** 3 - ties).sum()) / (total * (total - 1))
    variance = n_after * n_before / 12.0 * ((total + 1) - tie_term)
    if variance <= 0.0:  # every value the same: nothing is smaller than anything
        return RankTest(u, 1.0, delta, exact=False)
    z = (u - n_after * n_before / 2.0 + 0.5) / math.sqrt(variance)
    return RankTest(u, normal_sf(-z), delta, exact=False)


def _exact_lower_tail(ranks: Floats, n_after: int, observed: float) -> float:
    """P(rank sum of ``n_after`` values drawn without replacement from ``ranks`` <= ``observed``):
    the permutation distribution, tied ranks as they are (doubled mid-ranks are whole numbers)."""
    scores = np.rint(2.0 * ranks).astype(np.int64)
    top = int(scores.sum())
    # ways[j, s]: subsets of j of the scores seen so far that sum to s
    ways = np.zeros((n_after + 1, top + 1), dtype=np.float64)
    ways[0, 0] = 1.0
    for seen, score in enumerate(scores.tolist(), start=1):
        for chosen in range(min(seen, n_after), 0, -1):
            ways[chosen, score:] += ways[chosen - 1, : top + 1 - score]
    limit = round(2.0 * observed)
    return min(1.0, float(ways[n_after, : limit + 1].sum()) / math.comb(scores.size, n_after))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment: the family-wise error stays at the level each is compared with."""
    count = len(p_values)
    order = sorted(range(count), key=lambda index: p_values[index])
    adjusted = [1.0] * count
    running = 0.0
    for step, index in enumerate(order):
        running = max(running, min(1.0, (count - step) * p_values[index]))
        adjusted[index] = running
    return adjusted


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_greater(hits: int, trials: int, baseline_hits: int, baseline_trials: int) -> float:
    """One-sided Fisher exact test that the first proportion is larger than the baseline's:
    P(at least ``hits`` of the first sample's) given both margins, from the hypergeometric law."""
    total = trials + baseline_trials
    events = hits + baseline_hits
    if trials == 0 or events == 0:
        return 1.0
    term = math.exp(_log_comb(events, hits) + _log_comb(total - events, trials - hits) - _log_comb(total, trials))
    tail = 0.0
    for drawn in range(hits, min(trials, events) + 1):
        tail += term
        # P(drawn + 1) / P(drawn), from the binomial coefficients' ratios
        term *= (events - drawn) * (trials - drawn) / ((drawn + 1) * (total - events - trials + drawn + 1))
    return min(1.0, tail)


def wilson_interval(hits: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson's score interval of a proportion (95 % by default): sound at 0 and 1, unlike p ± z·se."""
    if trials == 0:
        return 0.0, 1.0
    share = hits / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def relative_drop(before_mean: float, after_mean: float, spread: float) -> float:
    """How much lower ``after`` is, as a share of the baseline's size: of its mean's magnitude, or
    of its spread where the mean is near zero (a reward centred on 0 has no meaningful ratio)."""
    scale = max(abs(before_mean), spread, 1e-12)
    return (before_mean - after_mean) / scale
