"""Evaluation health of one (agent, environment, region): failure-rate spikes and a rising duration p95.

Both compare the latest ``recent`` evaluations with the ``baseline`` before them, every
``check_every`` evaluations, with one-sided Fisher exact tests on counts (docs/insights.md):
- failures: failed evaluations in the recent window against the baseline's;
- duration p95: recent durations above the baseline's 95th percentile against the baseline's own
  (about 5 %): distribution-free, and exact for the small counts a tail gives.
A finding opens when p < ``alpha`` and the effect clears its floor; while it is open the baseline
stays as it was, and it clears when the recent window's effect falls below half the floor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

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
from tars.insight.detectors.ranks import Floats, as_floats, fisher_greater, wilson_interval


@dataclass(frozen=True)
class HealthSettings:
    baseline: int = 1000
    recent: int = 100
    min_baseline: int = 200
    check_every: int = 20
    # Tested every check_every evaluations on overlapping windows, so far below the usual 0.05.
    alpha: float = 1e-5
    # Failures: the recent rate must exceed the baseline's by this much (absolute) and be at least
    # twice it; critical from critical_failure_rate.
    min_failure_increase: float = 0.05
    critical_failure_rate: float = 0.25
    # Durations: the recent p95 must exceed the baseline's by this share; critical from twice it.
    min_p95_increase: float = 0.25
    critical_p95_ratio: float = 2.0


@dataclass
class _Window:
    """The values of one condition: a baseline that freezes while the condition is open, and the latest."""

    values: Floats
    frozen: Floats | None = None
    opened: Finding | None = None
    checked_at: int = 0

    def split(self, recent: int) -> tuple[Floats, Floats]:
        if self.frozen is not None:
            return self.frozen, self.values[-recent:]
        return self.values[: max(0, self.values.size - recent)], self.values[-recent:]


class EvaluationHealth:
    """``observe(failed, durations_ms)``: per evaluation in stored order, whether it failed and how long
    it took (NaN where unknown). Positions in findings count the evaluations given."""

    def __init__(self, subject: Subject, settings: HealthSettings | None = None) -> None:
        self.subject = subject
        self.settings = settings or HealthSettings()
        self._used = 0
        self._failures = _Window(np.empty(0))
        self._durations = _Window(np.empty(0))

    def observe(
        self, failed: Sequence[bool] | npt.NDArray[np.bool_], durations_ms: Sequence[float] | Floats
    ) -> list[Finding]:
        outcomes = as_floats(failed)
        durations = as_floats(durations_ms)
        if outcomes.size != durations.size:
            raise ValueError(f"{outcomes.size} outcomes but {durations.size} durations")
        self._used += outcomes.size
        durations = durations[np.isfinite(durations) & (durations >= 0)]
        keep = self.settings.baseline + self.settings.recent
        for window, values in ((self._failures, outcomes), (self._durations, durations)):
            kept = window.values if window.frozen is None else window.values[-self.settings.recent :]
            window.values = np.concatenate((kept, values))[-keep:]
        if self._used - self._failures.checked_at < self.settings.check_every:
            return []
        self._failures.checked_at = self._used
        return [*self._check_failures(), *self._check_durations()]

    def _check_failures(self) -> list[Finding]:
        settings, window = self.settings, self._failures
        baseline, recent = window.split(settings.recent)
        if baseline.size < settings.min_baseline or recent.size < settings.recent:
            return []
        base_hits, hits = int(baseline.sum()), int(recent.sum())
        base_rate, rate = base_hits / baseline.size, hits / recent.size
        increase = rate - base_rate
        p_value = fisher_greater(hits, recent.size, base_hits, baseline.size)
        if window.opened is None:
            floor = max(settings.min_failure_increase, base_rate)  # at least doubled, too
            if p_value >= settings.alpha or increase < floor:
                return []
        elif increase < settings.min_failure_increase / 2:
            return [self._resolve(window, f"failure rate back to {rate:.1%} (baseline {base_rate:.1%})")]
        evidence: dict[str, Evidence] = {
            "method": "one-sided Fisher exact test, recent window against the baseline before it",
            "p_value": p_value,
            "baseline_failure_rate": base_rate,
            "recent_failure_rate": rate,
            "baseline_interval": _interval(base_hits, baseline.size),
            "recent_interval": _interval(hits, recent.size),
            "before": {"n": int(baseline.size), "failed": base_hits},
            "after": {"n": int(recent.size), "failed": hits},
        }
        severity = Severity.CRITICAL if rate >= settings.critical_failure_rate else Severity.WARNING
        summary = f"{rate:.0%} of the last {recent.size} evaluations failed, against {base_rate:.1%} before"
        return [self._open(window, FindingKind.FAILURE_RATE_SPIKE, severity, evidence, p_value, increase, summary)]

    def _check_durations(self) -> list[Finding]:
        settings, window = self.settings, self._durations
        baseline, recent = window.split(settings.recent)
        if baseline.size < settings.min_baseline or recent.size < settings.recent:
            return []
        base_p95, p95 = _p95(baseline), _p95(recent)
        base_over, over = int((baseline > base_p95).sum()), int((recent > base_p95).sum())
        ratio = p95 / base_p95 if base_p95 > 0 else float("inf") if p95 > 0 else 1.0
        p_value = fisher_greater(over, recent.size, base_over, baseline.size)
        if window.opened is None:
            if p_value >= settings.alpha or ratio < 1 + settings.min_p95_increase:
                return []
        elif ratio < 1 + settings.min_p95_increase / 2:
            return [self._resolve(window, f"duration p95 back to {p95:.1f} ms (baseline {base_p95:.1f} ms)")]
        evidence: dict[str, Evidence] = {
            "method": "one-sided Fisher exact test of the share above the baseline's p95",
            "p_value": p_value,
            "baseline_p95_ms": base_p95,
            "recent_p95_ms": p95,
            "ratio": ratio,
            "before": {"n": int(baseline.size), "above_baseline_p95": base_over},
            "after": {"n": int(recent.size), "above_baseline_p95": over},
        }
        severity = Severity.CRITICAL if ratio >= settings.critical_p95_ratio else Severity.WARNING
        summary = f"duration p95 {p95:.1f} ms over the last {recent.size}, against {base_p95:.1f} ms before"
        return [self._open(window, FindingKind.DURATION_P95_RISE, severity, evidence, p_value, ratio - 1, summary)]

    def _open(
        self,
        window: _Window,
        kind: FindingKind,
        severity: Severity,
        evidence: dict[str, Evidence],
        p_value: float,
        impact: float,
        summary: str,
    ) -> Finding:
        if window.frozen is None:
            window.frozen = window.values[: -self.settings.recent].copy()
        region = self.subject.region
        recommendation = (
            Recommendation(Action.INVESTIGATE_REGION, "evaluations in this region degraded", {"region": region})
            if region
            else Recommendation(Action.INVESTIGATE, "evaluations degraded", {})
        )
        window.opened = Finding(
            kind=kind,
            state=FindingState.OPEN,
            severity=severity,
            subject=self.subject,
            # The recent window is where the change shows: its first evaluation, at the latest.
            first_seen=window.opened.first_seen if window.opened else self._used - self.settings.recent + 1,
            last_seen=self._used,
            evidence=evidence,
            confidence=max(0.0, 1.0 - p_value),
            impact=impact,
            summary=summary,
            recommendation=recommendation,
        )
        return window.opened

    def _resolve(self, window: _Window, summary: str) -> Finding:
        assert window.opened is not None
        finding = replace(window.opened, state=FindingState.RESOLVED, last_seen=self._used, summary=summary)
        window.opened = window.frozen = None
        return finding


def _interval(hits: int, trials: int) -> dict[str, float | int | None]:
    low, high = wilson_interval(hits, trials)
    return {"low": low, "high": high}


def _p95(values: Floats) -> float:
    """numpy's default (linear) 95th percentile, from a partial sort: the two order statistics it needs."""
    position = 0.95 * (values.size - 1)
    low = int(position)
    high = min(low + 1, values.size - 1)
    parted = np.partition(values, (low, high))
    return float(parted[low] + (position - low) * (parted[high] - parted[low]))
