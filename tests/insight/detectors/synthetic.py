"""Seeded rewards like the evaluations T.A.R.S. stores (benchmarks/insights.py draws the same kinds at
scale): CartPole's capped and bimodal, Pendulum's negative and skewed."""

from __future__ import annotations

import numpy as np

from tars.insight.detectors.ranks import Floats


def cartpole(rng: np.random.Generator, n: int, failure_share: float = 0.08) -> Floats:
    """Most episodes at or near 500, a few failing early (8-150)."""
    success = np.where(rng.random(n) < 0.8, 500.0, 500.0 - 350.0 * rng.beta(1.0, 4.0, n))
    rewards: Floats = np.where(rng.random(n) < failure_share, 8.0 + 142.0 * rng.beta(1.5, 6.0, n), success)
    return rewards


def pendulum(rng: np.random.Generator, n: int, mean: float = -400.0, cv: float = 0.35) -> Floats:
    """Negative, with a long tail of costly episodes; ``mean`` as given."""
    rewards: Floats = mean * rng.gamma(1 / cv**2, cv**2, n)
    return rewards
