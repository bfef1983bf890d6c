"""Evaluation durations kept as histograms, so percentiles over any window add up from rollups.

Bucket bounds grow by a factor of sqrt(2) from 0.25 ms (bucket i holds durations in (B[i-1], B[i]]);
the last holds everything above about 185 s. A percentile is interpolated inside its bucket on a log
scale: within a few percent for smooth distributions, never off by more than the bucket's factor.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

FIRST_BOUND_MS = 0.25
BUCKETS = 40
STEPS_PER_DOUBLING = 2
BOUNDS_MS: tuple[float, ...] = tuple(FIRST_BOUND_MS * 2 ** (i / STEPS_PER_DOUBLING) for i in range(BUCKETS - 1))


def bucket_of(duration_ms: float) -> int:
    # The first bound at or above the duration: exactly the SQL's ``> B[i-1] AND <= B[i]``.
    return bisect_left(BOUNDS_MS, duration_ms)


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0 < q < 1) of the durations counted in ``counts``; None if there are none."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            low = BOUNDS_MS[index - 1] if index > 0 else FIRST_BOUND_MS / 2
            high = BOUNDS_MS[index] if index < len(BOUNDS_MS) else BOUNDS_MS[-1] * 2
            share = (rank - seen) / count
            return round(float(low * (high / low) ** share), 3)
        seen += count
    return BOUNDS_MS[-1] * 2
