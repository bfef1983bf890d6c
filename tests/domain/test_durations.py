"""Duration buckets: Python and SQL must put every duration in the same bucket, or the rollups
kept as evaluations arrive disagree with the hours summed again from the raw rows."""

from __future__ import annotations

import random

from tars.domain.durations import BOUNDS_MS, BUCKETS, bucket_of


def sql_bucket(duration_ms: float) -> int:
    """The rule `rollups.raw_totals` writes in SQL: bucket i holds (B[i-1], B[i]]."""
    for index in range(BUCKETS):
        above_lower = index == 0 or duration_ms > BOUNDS_MS[index - 1]
        within_upper = index == len(BOUNDS_MS) or duration_ms <= BOUNDS_MS[index]
        if above_lower and within_upper:
            return index
    raise AssertionError(duration_ms)


def test_a_duration_on_or_just_past_a_bound_lands_where_sql_puts_it() -> None:
    edges = [0.0, 1e-9, *BOUNDS_MS, 1e9]
    edges += [bound * (1 + 1e-12) for bound in BOUNDS_MS] + [bound * (1 - 1e-12) for bound in BOUNDS_MS]
    rng = random.Random(7)
    edges += [rng.lognormvariate(3, 2) for _ in range(2000)]
    assert [bucket_of(value) for value in edges] == [sql_bucket(value) for value in edges]
