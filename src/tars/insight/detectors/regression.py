"""Reward regression: one (agent, environment, region) stream against its own recent baseline.

A one-sided CUSUM on rank scores (docs/insights.md). Each reward is scored by where it falls among
a reference sample of the stream's own recent rewards (its mid-rank percentile, standardised with
the reference's ties), so the score has mean 0 and variance 1 before any change whatever the
reward's distribution — bimodal, capped, skewed or heavy-tailed. A CUSUM of those scores signals a
sustained downward shift after as few observations as the shift's size allows, and the point where
it last stood at zero estimates when the shift began. The alarm opens a finding only if the rewards
since then are lower by at least ``min_relative_drop`` of the baseline mean: a shift smaller than
that is taken into the baseline instead (noise, or a change too small to be news).

Batches are scored at once (two binary searches in the sorted reference, a cumulative sum and a
running minimum: the CUSUM recursion in closed form), so the cost per reward is a few array
operations shared by the batch, not a test per reward.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from tars.domain.insights import (
    Action,
    Evidence,
    Finding,
    FindingKind,
    FindingState,
    Recommendation,
    Severity,
    Subject,
)
from tars.insight.detectors.ranks import Floats, as_floats, rank_test, relative_drop, summary

# Batches this small run the CUSUM recursion in plain Python (a single evaluation at a time costs a
# fifth of what the array path does); larger ones the array path.
_FEW = 16


@dataclass(frozen=True)
class RegressionSettings:
    # Rewards in the reference sample, the stream's own recent past: watching starts once it holds
    # ``warmup_size``, and it grows to ``reference_size`` as the stream goes on.
    warmup_size: int = 200
    reference_size: int = 500
    # How a reward's mid-rank percentile u in the reference becomes a score: "savage" (-log u: weighs
    # the worst rewards most, as when a share of episodes starts failing), "normal" (van der Waerden,
    # the normal quantile of 1 - u) or "wilcoxon" (0.5 - u).
    scores: str = "savage"
    # CUSUM allowance and threshold, in standard deviations of the score. Calibrated in
    # benchmarks/insights.py: < 1 false alarm per 1,000 clean streams of 1,000 rewards.
    allowance: float = 0.3
    threshold: float = 32.0
    # A reference of n rewards places the scores' mean off by about 1/sqrt(n) of their standard
    # deviation; the allowance is widened by reference_margin / sqrt(n), so that an unlucky reference
    # (a good stretch taken for the norm) does not drift the CUSUM up.
    reference_margin: float = 1.5
    # Smallest drop, as a share of the baseline mean, that opens a finding; and from which it is critical.
    min_relative_drop: float = 0.10
    critical_drop: float = 0.30
    # Fewest rewards after the estimated change before a finding opens.
    min_after: int = 10
    # Rewards before the current excursion join the reference this many at a time.
    refresh_every: int = 50
    # An open regression clears when the mean of the last ``recovery_window`` rewards is within half
    # the floor of the baseline mean; checked every ``check_every`` rewards.
    recovery_window: int = 50
    check_every: int = 10
    # An open finding is emitted again with its evidence brought up to date every this many rewards.
    update_every: int = 50
    # Floor of the score's standard deviation, as a share of what it is without ties: a reference with
    # (almost) no spread — a perfect CartPole agent's 500s — would otherwise make one odd reward an alarm.
    min_score_sd: float = 0.2
    # Rewards kept as the evidence of an open regression.
    max_after: int = 1000


class RewardRegression:
    """Watches one stream of completed evaluations' rewards, oldest first.

    ``observe`` takes the rewards in the order they were stored (a batch or one at a time) and
    returns the findings it opened, updated or resolved. Non-finite rewards are skipped and
    counted (``skipped``); positions in findings count the rewards used.
    """

    def __init__(self, subject: Subject, settings: RegressionSettings | None = None) -> None:
        self.subject = subject
        self.settings = settings or RegressionSettings()
        self.skipped = 0
        self._used = 0
        # The reference sample, in arrival order (to drop its oldest) and sorted (to score against).
        self._window: Floats = np.empty(0)
        self._sorted: Floats = np.empty(0)
        self._reference_mean = 0.0
        self._reference_spread = 0.0
        # score of a reward = _table[number below it + number at or below it] (a doubled mid-rank)
        self._table: Floats = np.empty(0)
        # The same two as lists, for the plain-Python path.
        self._sorted_list: list[float] = []
        self._table_list: list[float] = []
        self._allowance = self.settings.allowance
        # Rewards since the last refresh of the reference; _recent[0] is at position _recent_start.
        self._recent: Floats = np.empty(0)
        self._recent_start = 1
        self._cusum = 0.0
        # The position after the CUSUM last stood at 0: where a shift, if any, began.
        self._excursion = 1
        # (last position, run id) of the batches seen, for naming the runs before and after a change.
        self._runs: deque[tuple[int, str | None]] = deque()
        self._open: _OpenRegression | None = None

    @property
    def is_open(self) -> bool:
        return self._open is not None

    def observe(self, rewards: Sequence[float] | Floats, run_id: str | None = None) -> list[Finding]:
        values = as_floats(rewards)
        finite = np.isfinite(values)
        if not finite.all():
            self.skipped += int(values.size - finite.sum())
            values = values[finite]
        if values.size == 0:
            return []
        start = self._used + 1
        self._used += values.size
        self._runs.append((self._used, run_id))
        findings: list[Finding] = []
        done = 0
        while done < values.size:
            if self._window.size < self.settings.warmup_size:
                done += self._warm_up(values[done:], start + done)
            elif self._open is None:
                done += self._watch(values[done:], start + done, findings)
            else:
                done += self._follow(values[done:], findings)
        return findings

    # Warming up: the first rewards are the reference.

    def _warm_up(self, values: Floats, start: int) -> int:
        take = min(values.size, self.settings.warmup_size - self._window.size)
        self._set_reference(np.concatenate((self._window, values[:take])))
        self._recent_start = self._excursion = start + take
        return take

    def _set_reference(self, window: Floats) -> None:
        settings = self.settings
        self._window = window[-settings.reference_size :]
        self._sorted = np.sort(self._window)
        self._reference_mean = float(self._window.mean())
        self._reference_spread = float(self._window.std())
        raw = _raw_scores(self._sorted.size, settings.scores)
        # Standardised with the scores the reference itself gets: mean 0 and variance 1 under no
        # change, whatever ties it holds.
        own = raw[self._doubled_midranks(self._sorted)]
        floor = settings.min_score_sd * float(raw.std())
        self._table = (raw - float(own.mean())) / max(float(own.std()), floor, 1e-12)
        self._allowance = settings.allowance + settings.reference_margin / self._sorted.size**0.5
        self._sorted_list = self._sorted.tolist()
        self._table_list = self._table.tolist()

    def _doubled_midranks(self, values: Floats) -> npt.NDArray[np.intp]:
        below = np.searchsorted(self._sorted, values, side="left")
        at_or_below = np.searchsorted(self._sorted, values, side="right")
        result: npt.NDArray[np.intp] = below + at_or_below
        return result

    # Watching: the CUSUM over rank scores.

    def _watch(self, values: Floats, start: int, findings: list[Finding]) -> int:
        if values.size <= _FEW:
            taken, alarm = self._watch_few(values, start)
        else:
            taken, alarm = self._watch_many(values, start)
        self._recent = np.concatenate((self._recent, values[:taken]))
        if alarm:
            self._alarm(start + taken - 1, findings)
        else:
            self._refresh()
        return taken

    def _watch_few(self, values: Floats, start: int) -> tuple[int, bool]:
        """The CUSUM recursion itself, in plain Python: for a handful of rewards, cheaper than arrays."""
        table, reference, allowance = self._table_list, self._sorted_list, self._allowance
        threshold, min_after = self.settings.threshold, self.settings.min_after
        cusum, excursion = self._cusum, self._excursion
        taken, alarm = values.size, False
        for offset, value in enumerate(values.tolist()):
            cusum = max(0.0, cusum + table[bisect_left(reference, value) + bisect_right(reference, value)] - allowance)
            if cusum == 0.0:
                excursion = start + offset + 1
            elif cusum >= threshold and start + offset - excursion + 1 >= min_after:
                taken, alarm = offset + 1, True
                break
        self._cusum, self._excursion = cusum, excursion
        return taken, alarm

    def _watch_many(self, values: Floats, start: int) -> tuple[int, bool]:
        steps = np.cumsum(self._table[self._doubled_midranks(values)] - self._allowance)
        # S_t = max(0, S_{t-1} + x_t) in closed form: S_t = C_t - min(-S_0, min_{s<=t} C_s).
        cusum = steps - np.minimum(np.minimum.accumulate(steps), -self._cusum)
        # The position after the CUSUM last stood at 0, at every reward.
        offsets = np.arange(values.size)
        last_zero = np.maximum.accumulate(np.where(cusum == 0.0, offsets, -1))
        excursion = np.where(last_zero >= 0, start + last_zero + 1, self._excursion)
        # An alarm counts once its excursion holds min_after rewards; before, keep watching.
        ready = (cusum >= self.settings.threshold) & (start + offsets - excursion + 1 >= self.settings.min_after)
        alarms = np.flatnonzero(ready)
        taken = values.size if alarms.size == 0 else int(alarms[0]) + 1
        self._cusum = float(cusum[taken - 1])
        self._excursion = int(excursion[taken - 1])
        return taken, alarms.size > 0

    def _refresh(self, force: bool = False) -> None:
        """Moves the rewards before the current excursion into the reference, a block at a time; with
        ``force``, all of them (a shift too small to report becomes the new baseline)."""
        safe = self._recent.size if force else self._excursion - self._recent_start
        cap = 4 * self.settings.reference_size
        if not force and self._recent.size > cap:  # a long excursion that never alarms: bound it
            safe = self._recent.size - cap
        if safe < (1 if force else self.settings.refresh_every):
            return
        self._set_reference(np.concatenate((self._window, self._recent[:safe])))
        self._recent = self._recent[safe:]
        self._recent_start += safe
        if force:
            self._cusum = 0.0
        self._excursion = max(self._excursion, self._recent_start)
        while len(self._runs) > 1 and self._runs[0][0] < self._recent_start - 1:
            self._runs.popleft()

    def _alarm(self, position: int, findings: list[Finding]) -> None:
        change = self._excursion
        after = self._recent[change - self._recent_start :]
        drop = relative_drop(self._reference_mean, float(after.mean()), self._reference_spread)
        if drop < self.settings.min_relative_drop:
            self._refresh(force=True)
            return
        self._open = _OpenRegression(
            first_seen=change,
            after=after,
            statistic=self._cusum,
            baseline_run=self._run_at(change - 1),
            current_run=self._run_at(position),
            emitted_at=position,
            checked_at=position,
        )
        findings.append(self._finding(FindingState.OPEN, position, self._open.after))

    # Following an open regression: evidence grows, and the condition may clear.

    def _follow(self, values: Floats, findings: list[Finding]) -> int:
        assert self._open is not None
        regression = self._open
        regression.after = np.concatenate((regression.after, values))[-self.settings.max_after :]
        regression.current_run = self._runs[-1][1] or regression.current_run
        while len(self._runs) > 1:  # only the latest run matters while a regression is open
            self._runs.popleft()
        position = self._used
        settings = self.settings
        if position - regression.checked_at >= settings.check_every:
            regression.checked_at = position
            recent = regression.after[-settings.recovery_window :]
            if recent.size >= settings.recovery_window and self._recovered(recent):
                findings.append(self._finding(FindingState.RESOLVED, position, recent))
                self._open = None
                self._cusum = 0.0
                self._recent = np.empty(0)
                self._recent_start = self._excursion = position + 1
                return values.size
        if position - regression.emitted_at >= settings.update_every:
            regression.emitted_at = position
            findings.append(self._finding(FindingState.OPEN, position, regression.after))
        return values.size

    def _recovered(self, recent: Floats) -> bool:
        drop = relative_drop(self._reference_mean, float(recent.mean()), self._reference_spread)
        return drop < self.settings.min_relative_drop / 2

    def _run_at(self, position: int) -> str | None:
        for last, run_id in self._runs:
            if position <= last:
                return run_id
        return None

    def _finding(self, state: FindingState, position: int, after: Floats) -> Finding:
        assert self._open is not None
        regression = self._open
        settings = self.settings
        test = rank_test(after, self._window)
        drop = relative_drop(self._reference_mean, float(after.mean()), self._reference_spread)
        severity = Severity.CRITICAL if drop >= settings.critical_drop else Severity.WARNING
        evidence: dict[str, Evidence] = {
            "method": "rank CUSUM, confirmed by a one-sided Mann-Whitney test",
            "statistic": regression.statistic,
            "threshold": settings.threshold,
            "allowance": self._allowance,
            "p_value": test.p_value,
            "effect_size": test.cliffs_delta,
            "relative_drop": drop,
            "before": summary(self._window),
            "after": summary(after),
            "reference_size": int(self._window.size),
            "after_size": int(after.size),
            "change_position": regression.first_seen,
            "baseline_run": regression.baseline_run,
            "current_run": regression.current_run,
            "skipped_non_finite": self.skipped,
        }
        before_mean = self._reference_mean
        after_mean = float(after.mean())
        if state is FindingState.RESOLVED:
            summary_text = f"reward back to {after_mean:.1f} (baseline {before_mean:.1f}) over the last {after.size}"
        else:
            summary_text = (
                f"reward {drop:.0%} below its baseline since evaluation {regression.first_seen}: "
                f"mean {after_mean:.1f} against {before_mean:.1f}"
            )
        return Finding(
            kind=FindingKind.REWARD_REGRESSION,
            state=state,
            severity=severity,
            subject=self.subject,
            first_seen=regression.first_seen,
            last_seen=position,
            evidence=evidence,
            confidence=max(0.0, min(1.0, 1.0 - test.p_value)),
            impact=drop,
            summary=summary_text,
            recommendation=_recommend(regression),
        )


@dataclass
class _OpenRegression:
    first_seen: int
    statistic: float
    after: Floats
    baseline_run: str | None
    current_run: str | None
    emitted_at: int
    checked_at: int


def _recommend(regression: _OpenRegression) -> Recommendation:
    # A new model since the baseline is the likeliest cause, and the cheapest to undo.
    if regression.baseline_run and regression.current_run and regression.baseline_run != regression.current_run:
        return Recommendation(
            Action.ROLLBACK,
            "the rewards fell when a new model's evaluations began: go back to the one before",
            {"run_id": regression.baseline_run, "regressed_run_id": regression.current_run},
        )
    return Recommendation(
        Action.INVESTIGATE,
        "the same model's rewards fell: its environment, inputs or evaluation setup changed",
        {"run_id": regression.current_run},
    )


@cache
def _raw_scores(size: int, kind: str) -> Floats:
    """Score of each doubled mid-rank j in 0..2n against a reference of n: its percentile is
    (j + 1) / (2n + 2), and a lower percentile is a worse reward, so a higher score. Made once per
    reference size and shared by every detector (the normal quantiles come from the standard library)."""
    percentiles = as_floats((np.arange(2 * size + 1) + 1.0) / (2.0 * size + 2.0))
    if kind == "savage":
        return as_floats(-np.log(percentiles))
    if kind == "normal":
        inverse = NormalDist().inv_cdf
        return as_floats([inverse(1.0 - float(percentile)) for percentile in percentiles])
    if kind == "wilcoxon":
        return 0.5 - percentiles
    raise ValueError(f"no such scores: {kind!r} (savage, normal or wilcoxon)")
