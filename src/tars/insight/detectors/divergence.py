"""Region divergence: one region's rewards significantly below the same agent's everywhere else.

Each region's latest rewards are tested against the pooled latest rewards of the other regions with a
one-sided Mann-Whitney test, the p-values adjusted with Holm's step-down method across the regions
tested together (each test is a chance of a false alarm), and a finding opens only when the adjusted
p-value is below ``alpha`` and the region's mean is lower by at least ``min_relative_drop`` of the
others' (docs/insights.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
from tars.insight.detectors.ranks import (
    Floats,
    RankTest,
    as_floats,
    holm,
    midranks,
    rank_test_in,
    relative_drop,
    summary,
)


@dataclass(frozen=True)
class DivergenceSettings:
    # Latest rewards kept per region, and the fewest a region needs to be tested or compared with.
    window: int = 200
    min_per_region: int = 30
    # Family-wise error of one assessment (Holm across the regions), and the adjusted p-value above
    # which an open divergence clears.
    alpha: float = 1e-3
    clear_alpha: float = 0.05
    # Smallest drop against the other regions' mean that opens a finding; from which it is critical.
    min_relative_drop: float = 0.10
    critical_drop: float = 0.30
    # Rewards (any region) between two assessments.
    check_every: int = 50


class RegionDivergence:
    """Watches one agent on one environment across regions.

    ``observe(region, rewards)`` adds a region's latest completed rewards (non-finite ones skipped)
    and, every ``check_every`` rewards, assesses every region; ``assess`` does so at once. Positions
    in findings count the rewards this detector was given, all regions together.
    """

    def __init__(self, agent_id: str, environment: str, settings: DivergenceSettings | None = None) -> None:
        self.agent_id = agent_id
        self.environment = environment
        self.settings = settings or DivergenceSettings()
        self._rewards: dict[str, Floats] = {}
        self._used = 0
        self._assessed_at = 0
        # Region -> position where its open divergence was first seen.
        self._open: dict[str, int] = {}

    def observe(self, region: str, rewards: Sequence[float] | Floats) -> list[Finding]:
        values = as_floats(rewards)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return []
        self._used += values.size
        kept = self._rewards.get(region, np.empty(0))
        self._rewards[region] = np.concatenate((kept, values))[-self.settings.window :]
        if self._used - self._assessed_at < self.settings.check_every:
            return []
        return self.assess()

    def assess(self) -> list[Finding]:
        settings = self.settings
        self._assessed_at = self._used
        ready = sorted(region for region, values in self._rewards.items() if values.size >= settings.min_per_region)
        if len(ready) < 2:
            return []
        # One ranking of every region's rewards serves every region's test against the others.
        pooled = np.concatenate([self._rewards[region] for region in ready])
        ranks, ties = midranks(pooled)
        tests, start = {}, 0
        for region in ready:
            size = self._rewards[region].size
            tests[region] = rank_test_in(ranks, ties, float(ranks[start : start + size].sum()), size)
            start += size
        adjusted = dict(zip(ready, holm([tests[region].p_value for region in ready]), strict=True))
        findings = []
        for region in ready:
            if region not in self._open and adjusted[region] >= settings.alpha:
                continue
            others = self._others(region, ready)
            mine = self._rewards[region]
            drop = relative_drop(float(others.mean()), float(mine.mean()), float(others.std()))
            if region in self._open:
                if adjusted[region] > settings.clear_alpha or drop < settings.min_relative_drop / 2:
                    state = FindingState.RESOLVED
                else:
                    state = FindingState.OPEN
            elif drop >= settings.min_relative_drop:
                state = FindingState.OPEN
                self._open[region] = self._used
            else:
                continue
            findings.append(self._finding(region, state, tests[region], adjusted[region], drop, ready))
            if state is FindingState.RESOLVED:
                del self._open[region]
        return findings

    def _others(self, region: str, ready: list[str]) -> Floats:
        return np.concatenate([self._rewards[other] for other in ready if other != region])

    def _finding(
        self, region: str, state: FindingState, test: RankTest, adjusted: float, drop: float, ready: list[str]
    ) -> Finding:
        others = self._others(region, ready)
        mine = self._rewards[region]
        evidence: dict[str, Evidence] = {
            "method": "one-sided Mann-Whitney, region against the others pooled, Holm-adjusted",
            "statistic": test.u,
            "p_value": test.p_value,
            "p_value_adjusted": adjusted,
            "regions_tested": len(ready),
            "effect_size": test.cliffs_delta,
            "relative_drop": drop,
            "before": summary(others),
            "after": summary(mine),
            "window": self.settings.window,
        }
        severity = Severity.CRITICAL if drop >= self.settings.critical_drop else Severity.WARNING
        return Finding(
            kind=FindingKind.REGION_DIVERGENCE,
            state=state,
            severity=severity,
            subject=Subject(self.agent_id, self.environment, region),
            first_seen=self._open.get(region, self._used),
            last_seen=self._used,
            evidence=evidence,
            confidence=max(0.0, 1.0 - adjusted),
            impact=drop,
            summary=(
                f"{region} back in line with the other regions"
                if state is FindingState.RESOLVED
                else f"rewards in {region} {drop:.0%} below the agent's other regions "
                f"(mean {mine.mean():.1f} against {others.mean():.1f})"
            ),
            recommendation=Recommendation(
                Action.INVESTIGATE_REGION,
                "the same agent does well elsewhere: what differs is the region (its workers, data or latency)",
                {"region": region},
            ),
        )
