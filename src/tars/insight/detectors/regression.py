"""Reward regression: one (agent, environment, region) stream against its own recent baseline.

A bank of CUSUMs of rank log-likelihood ratios (docs/insights.md). Each new reward is placed among a
reference sample of the stream's own past rewards, every reward before its block of ``refresh_every``
(sequential ranks, by blocks: a reference that misplaces the distribution lasts one block), up to the
newest ``reference_size``: L of them below it, U at or below it. Before any
change its percentile u is uniform, whatever the rewards' distribution (bimodal, capped, skewed or
heavy-tailed), and the rank interval [L/(n+1), (U+1)/(n+1)] has probability (U+1-L)/(n+1). Each
alternative of the bank is a way of getting worse, a Beta(a, b) density of u: a < 1 puts more mass on
the worst rewards (episodes failing), b > 1 less on the best (fewer perfect episodes). The reward's
log-likelihood ratio is log(G(hi) - G(lo)) - log(hi - lo), G the alternative's distribution function
on the interval: exact for ties (a capped reward shares its rank with the reference's), with mean
below 0 before a change. A CUSUM per alternative signals a sustained change after as few rewards as
its size allows (Lorden, Moustakides: the fastest detector for a given false-alarm rate, when the
alternative is right), and the point where it last stood at zero estimates when the change began.
The alarm opens a finding only if the rewards since then are lower by at least ``min_relative_drop``
of the baseline mean: a shift smaller than that is taken into the baseline instead (noise, or a
change too small to be news).

Batches are scored at once (two binary searches in the sorted reference, a table look-up, a
cumulative sum and a running minimum per alternative: the CUSUM recursion in closed form), so the
cost per reward is a few array operations shared by the batch, not a test per reward.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

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
class Alternative:
    """A way of getting worse, as the density of a new reward's percentile u in the reference:
    Beta(a, b), a <= 1 <= b. ``threshold``: the CUSUM's, in nats of log-likelihood ratio."""

    a: float
    b: float
    threshold: float

    def __post_init__(self) -> None:
        if not (0.0 < self.a <= 1.0 <= self.b) or (self.a, self.b) == (1.0, 1.0) or self.threshold <= 0.0:
            raise ValueError(f"an alternative needs 0 < a <= 1 <= b, not both 1, and a threshold > 0: {self}")


@dataclass(frozen=True)
class RegressionSettings:
    # Rewards in the reference sample, the stream's own past: watching starts once it holds
    # ``warmup_size``, and it grows to ``reference_size`` (then the newest) as the stream goes on.
    warmup_size: int = 200
    reference_size: int = 1000
    # The bank. Beta(0.6, 1.3): more of the worst rewards and somewhat fewer of the best, the most
    # efficient single alternative on the benchmark's drops. Beta(0.8, 2.3): mostly fewer of the best
    # (CartPole's perfect episodes getting shorter). Beta(0.75, 1): a small shift towards the worst, for
    # the drops too small for the other two (their drift is negative for them: without it, 92 % of the
    # benchmark's drops are found). Thresholds in nats, calibrated by simulation (`benchmarks/insights.py
    # calibrate`): together, at most 0.5 false alarm per 1,000 clean streams of 1,000 rewards, drawn like
    # the benchmark's (0.3) or uniform (0.5): ARL0 about 2.7 million rewards.
    alternatives: tuple[Alternative, ...] = (
        Alternative(0.75, 1.0, 12.37),
        Alternative(0.6, 1.3, 13.96),
        Alternative(0.8, 2.3, 13.8),
    )
    # Each CUSUM's allowance, in standard deviations of its log-likelihood ratio before a change over
    # sqrt(n), n the reference's size: a guard against a reference that misplaces the rewards'
    # distribution (a good stretch taken for the norm drifts a CUSUM up). None is needed: such a
    # reference lasts one block (``refresh_every``), and the thresholds are calibrated with it.
    reference_margin: float = 0.0
    # Smallest drop, as a share of the baseline mean, that opens a finding; and from which it is critical.
    min_relative_drop: float = 0.10
    critical_drop: float = 0.30
    # Fewest rewards after the estimated change before a finding opens.
    min_after: int = 10
    # Rewards join the reference this many at a time (each is scored against all those before its block).
    refresh_every: int = 50
    # An open regression clears when the mean of the last ``recovery_window`` rewards is within half
    # the floor of the baseline mean; checked every ``check_every`` rewards.
    recovery_window: int = 50
    check_every: int = 10
    # An open finding is emitted again with its evidence brought up to date every this many rewards.
    update_every: int = 50
    # Rewards kept as the evidence of an open regression.
    max_after: int = 1000

    def __post_init__(self) -> None:
        if not self.alternatives:
            raise ValueError("the bank needs at least one alternative")


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
        alternatives = self.settings.alternatives
        self._count = len(alternatives)
        self._thresholds = [alternative.threshold for alternative in alternatives]
        self._threshold_array = as_floats(self._thresholds)
        # The reference sample, in arrival order (to drop its oldest) and sorted (to score against).
        self._window: Floats = np.empty(0)
        self._sorted: Floats = np.empty(0)
        self._reference_mean = 0.0
        self._reference_spread = 0.0
        # Per alternative: its distribution function at k/(n+1), k = 0..n+1; and, for a reward tied
        # with none of the reference (L == U), its log-likelihood ratio by L.
        self._cdfs: Floats = np.empty((self._count, 0))
        self._untied: Floats = np.empty((self._count, 0))
        self._allowances: Floats = np.zeros(self._count)
        # The same as lists, for the plain-Python path.
        self._sorted_list: list[float] = []
        self._cdf_lists: list[list[float]] = []
        self._allowance_list: list[float] = []
        # Each alternative's CUSUM step (ratio less allowance) for a reward tied with none of the
        # reference, by the number below it: one look-up per reward for the whole bank.
        self._steps_by_place: list[tuple[float, ...]] = []
        # The same for a reward tied with some of the reference, by (number below it, number tied + 1).
        self._steps_by_tie: dict[tuple[int, int], tuple[float, ...]] = {}
        # Rewards since the last refresh of the reference; _recent[0] is at position _recent_start.
        self._recent: Floats = np.empty(0)
        self._recent_start = 1
        # Per alternative: its CUSUM, and the position after it last stood at 0 (where a change began).
        self._cusums = [0.0] * self._count
        self._excursions = [1] * self._count
        # The alternative that raised the last alarm.
        self._alarmed = 0
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
        self._recent_start = start + take
        self._excursions = [self._recent_start] * self._count
        return take

    def _set_reference(self, window: Floats) -> None:
        settings = self.settings
        # Whole blocks past the warm-up, the oldest dropped: the reference takes few sizes (a table each).
        blocks = max(window.size - settings.warmup_size, 0) // settings.refresh_every
        size = min(settings.reference_size, window.size, settings.warmup_size + blocks * settings.refresh_every)
        self._window = window[-size:]
        self._sorted = np.sort(self._window)
        size = self._sorted.size
        self._reference_mean = float(self._window.sum()) / size
        self._reference_spread = (
            max(float(np.dot(self._window, self._window)) / size - self._reference_mean**2, 0.0) ** 0.5
        )
        self._sorted_list = self._sorted.tolist()
        self._steps_by_tie = {}
        if size == self._untied.shape[1] - 1:  # the same size as before (the common case once grown)
            return
        bank = _bank(size, settings.alternatives, settings.reference_margin)
        self._cdfs, self._untied, self._allowances = bank.cdfs, bank.untied, bank.allowances
        self._cdf_lists, self._allowance_list, self._steps_by_place = bank.cdf_lists, bank.allowance_list, bank.steps

    # Watching: a CUSUM of log-likelihood ratios per alternative.

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
        """The CUSUM recursions themselves, in plain Python: for a handful of rewards, cheaper than arrays."""
        reference, size = self._sorted_list, len(self._sorted_list)
        steps_by_place, cdfs, allowances = self._steps_by_place, self._cdf_lists, self._allowance_list
        thresholds, min_after = self._thresholds, self.settings.min_after
        cusums, excursions = self._cusums, self._excursions
        for offset, value in enumerate(values.tolist()):
            below = bisect_left(reference, value)
            if below < size and reference[below] == value:  # tied with some of the reference
                span = bisect_right(reference, value, below) + 1 - below
                tie = self._steps_by_tie.get((below, span))
                if tie is None:
                    tie = self._steps_by_tie[below, span] = tuple(
                        math.log((cdf[below + span] - cdf[below]) * (size + 1) / span) - allowance
                        for cdf, allowance in zip(cdfs, allowances, strict=True)
                    )
                steps = tie
            else:
                steps = steps_by_place[below]
            position = start + offset
            alarmed = -1
            for index, step in enumerate(steps):
                cusum = cusums[index] + step
                if cusum <= 0.0:
                    cusums[index] = 0.0
                    excursions[index] = position + 1
                    continue
                cusums[index] = cusum
                # an alarm counts once its excursion holds min_after rewards; the strongest is named
                if (
                    cusum >= thresholds[index]
                    and position - excursions[index] + 1 >= min_after
                    and (alarmed < 0 or cusum / thresholds[index] > cusums[alarmed] / thresholds[alarmed])
                ):
                    alarmed = index
            if alarmed >= 0:
                self._alarmed = alarmed
                return offset + 1, True
        return values.size, False

    def _watch_many(self, values: Floats, start: int) -> tuple[int, bool]:
        ratios = self._ratios(values)
        steps = np.cumsum(ratios - self._allowances[:, None], axis=1)
        # S_t = max(0, S_{t-1} + x_t) in closed form: S_t = C_t - min(-S_0, min_{s<=t} C_s).
        cusums = steps - np.minimum(np.minimum.accumulate(steps, axis=1), -as_floats(self._cusums)[:, None])
        # The position after each CUSUM last stood at 0, at every reward.
        offsets = np.arange(values.size)
        last_zero = np.maximum.accumulate(np.where(cusums == 0.0, offsets, -1), axis=1)
        excursions = np.where(last_zero >= 0, start + last_zero + 1, np.asarray(self._excursions)[:, None])
        # An alarm counts once its excursion holds min_after rewards; before, keep watching.
        ready = (cusums >= self._threshold_array[:, None]) & (
            start + offsets - excursions + 1 >= self.settings.min_after
        )
        alarms = np.flatnonzero(ready.any(axis=0))
        taken = values.size if alarms.size == 0 else int(alarms[0]) + 1
        if alarms.size:
            column = int(alarms[0])
            strength = np.where(ready[:, column], cusums[:, column] / self._threshold_array, -1.0)
            self._alarmed = int(np.argmax(strength))
        self._cusums = cusums[:, taken - 1].tolist()
        self._excursions = [int(excursion) for excursion in excursions[:, taken - 1]]
        return taken, alarms.size > 0

    def _ratios(self, values: Floats) -> Floats:
        """Each alternative's log-likelihood ratio of each reward (a row per alternative)."""
        return _ratios(self._sorted, values, self._cdfs, self._untied)

    def _refresh(self, force: bool = False) -> None:
        """Moves the rewards since the last refresh into the reference once there are ``refresh_every``
        of them; with ``force``, however few, and the CUSUMs start again (a shift too small to report
        becomes the new baseline). Every reward is so scored against all the rewards before its block,
        those of a current excursion too: a reference that happens to misplace the rewards' distribution
        is corrected within a block instead of lasting (sequential ranks, a block at a time)."""
        every = self.settings.refresh_every
        # whole blocks: the reference then takes few distinct sizes as it grows (a table each)
        moved = self._recent.size if force else self._recent.size // every * every
        if moved == 0:
            return
        self._set_reference(np.concatenate((self._window, self._recent[:moved])))
        self._recent_start += moved
        self._recent = self._recent[moved:]
        if force:
            self._cusums = [0.0] * self._count
            self._excursions = [self._recent_start] * self._count
        oldest = self._recent_start - self._window.size
        while len(self._runs) > 1 and self._runs[0][0] < oldest - self.settings.min_after:
            self._runs.popleft()

    def _split(self, change: int) -> tuple[Floats, Floats]:
        """The reference's rewards before ``change`` (the baseline, at least ``warmup_size`` of them), and
        the rewards from there on (the stretch, some of them already in the reference)."""
        held = min(self._recent_start - change, self._window.size - self.settings.warmup_size)
        if held <= 0:
            return self._window, self._recent[-held:]
        kept = self._window.size - held
        return self._window[:kept], np.concatenate((self._window[kept:], self._recent))

    def _alarm(self, position: int, findings: list[Finding]) -> None:
        baseline, after = self._split(self._excursions[self._alarmed])
        drop = relative_drop(float(baseline.mean()), float(after.mean()), float(baseline.std()))
        if drop < self.settings.min_relative_drop:
            self._refresh(force=True)
            return
        change = position - after.size + 1
        # The regression is measured against the baseline, which stays as it is while it is open.
        self._set_reference(baseline)
        self._recent = np.empty(0)
        alternative = self.settings.alternatives[self._alarmed]
        self._open = _OpenRegression(
            first_seen=change,
            after=after,
            statistic=self._cusums[self._alarmed],
            alternative=alternative,
            allowance=float(self._allowances[self._alarmed]),
            # A fast alarm can date a change a few rewards late: the baseline's run is the one
            # min_after rewards before.
            baseline_run=self._run_at(change - 1 - self.settings.min_after),
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
                self._cusums = [0.0] * self._count
                self._recent = np.empty(0)
                self._recent_start = position + 1
                self._excursions = [self._recent_start] * self._count
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
            "method": "rank log-likelihood-ratio CUSUM, confirmed by a one-sided Mann-Whitney test",
            "alternative": f"Beta({regression.alternative.a:g}, {regression.alternative.b:g})",
            "statistic": regression.statistic,
            "threshold": regression.alternative.threshold,
            "allowance": regression.allowance,
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
    alternative: Alternative
    allowance: float
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


def rank_log_likelihood_ratios(reference: Floats, values: Floats, alternatives: tuple[Alternative, ...]) -> Floats:
    """Each alternative's log-likelihood ratio of each value against a sorted reference sample (a row
    per alternative), as the detector scores rewards (without its allowance)."""
    bank = _bank(reference.size, alternatives, 0.0)
    return _ratios(reference, values, bank.cdfs, bank.untied)


def _ratios(reference: Floats, values: Floats, cdfs: Floats, untied: Floats) -> Floats:
    below = np.searchsorted(reference, values, side="left")
    at_or_below = np.searchsorted(reference, values, side="right")
    ratios: Floats = untied[:, below]
    tied = np.flatnonzero(at_or_below > below)
    if tied.size:
        low, high = below[tied], at_or_below[tied]
        mass = cdfs[:, high + 1] - cdfs[:, low]
        ratios[:, tied] = np.log(mass * (reference.size + 1) / (high + 1 - low))
    return ratios


@dataclass(frozen=True)
class _Bank:
    """What scoring against a reference of one size takes, for every alternative of a bank (arrays
    with a row per alternative, and the same as lists for the plain-Python path)."""

    cdfs: Floats
    untied: Floats
    allowances: Floats
    cdf_lists: list[list[float]]
    allowance_list: list[float]
    steps: list[tuple[float, ...]]  # by the number below: each alternative's ratio less its allowance


@lru_cache(maxsize=64)
def _bank(size: int, alternatives: tuple[Alternative, ...], margin: float) -> _Bank:
    """Made once per reference size and bank, shared by every detector: a reference grows by whole
    blocks (17 sizes from 200 to 1,000) and then keeps its size. Bounded (a table of 1,000 is ~300 kB),
    since a reference that took in a stretch too small to report has grown to any size."""
    tables = [_tables(size, alternative.a, alternative.b) for alternative in alternatives]
    cdfs = np.stack([cdf for cdf, _, _ in tables])
    untied = np.stack([untied for _, untied, _ in tables])
    allowances = as_floats([margin * spread / size**0.5 for _, _, spread in tables])
    steps = list(zip(*(untied - allowances[:, None]).tolist(), strict=True))
    return _Bank(cdfs, untied, allowances, cdfs.tolist(), allowances.tolist(), steps)


def _tables(size: int, a: float, b: float) -> tuple[Floats, Floats, float]:
    """For a reference of ``size`` rewards and the alternative Beta(a, b): its distribution function
    at k/(size+1), k = 0..size+1; the log-likelihood ratio of a reward tied with none of the reference,
    by the number below it; and that ratio's standard deviation before a change (each of the size+1
    places equally likely)."""
    cdf = _beta_cdf(as_floats(np.arange(size + 2) / (size + 1.0)), a, b)
    with np.errstate(divide="ignore"):
        untied = as_floats(np.log(np.diff(cdf) * (size + 1)))
    return cdf, untied, float(untied.std())


def _beta_cdf(points: Floats, a: float, b: float) -> Floats:
    """The regularised incomplete beta function I_u(a, b) at ``points``, for a <= 1 <= b: closed forms
    when a or b is 1, else interpolated in a table of the integral (below)."""
    if b == 1.0:
        return as_floats(points**a)
    if a == 1.0:
        return as_floats(1.0 - (1.0 - points) ** b)
    grid, cumulative = _beta_integral(a, b)
    return as_floats(np.interp(points**a, grid, cumulative))


@cache
def _beta_integral(a: float, b: float) -> tuple[Floats, Floats]:
    """I_u(a, b) as the integral of (1 - t^(1/a))^(b-1) / a over t = u^a (smooth there, where the density
    is not at 0), by the trapezoidal rule on a fine grid of t, normalised to end at 1: once per (a, b)."""
    grid = np.linspace(0.0, 1.0, 100_001)
    density = (1.0 - grid ** (1.0 / a)) ** (b - 1.0)
    cumulative = np.concatenate(([0.0], np.cumsum((density[1:] + density[:-1]) / 2.0)))
    return grid, as_floats(cumulative / cumulative[-1])
