"""Model regression: a new run's evaluations significantly worse than the previous run's.

A run is evaluated on a handful of episodes (TARS_EVALUATION_EPISODES, 10 by default), so the test is
the exact one-sided Mann-Whitney test (the permutation distribution of the rank sum, ties included)
while both runs together have at most 50 evaluations, and its normal approximation beyond; the
finding opens when p < ``alpha`` and the new run's mean is lower by at least ``min_relative_drop``
of the previous run's (docs/insights.md). Evaluations that arrive later for either run (an on-demand
evaluation carries its run id) bring the evidence up to date.
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
from tars.insight.detectors.ranks import Floats, as_floats, rank_test, relative_drop, summary


@dataclass(frozen=True)
class ModelSettings:
    # Fewest evaluations of each run before they are compared.
    min_evaluations: int = 5
    alpha: float = 0.01
    # An open regression clears when more evidence puts p above this, or the drop below half the floor.
    clear_alpha: float = 0.05
    min_relative_drop: float = 0.10
    critical_drop: float = 0.30
    # Evaluations kept per run, and runs remembered.
    max_per_run: int = 1000
    max_runs: int = 8


class ModelRegression:
    """Compares each new run of one agent on one environment with the run before it.

    ``observe(run_id, rewards, previous_run_id=None)`` adds evaluations of a run (non-finite rewards
    skipped). A run id not seen before becomes the current run; the one it is compared with is
    ``previous_run_id`` when given (the run it continued from, say), else the run that was current
    before it. Positions in findings count the evaluations of the current run.
    """

    def __init__(self, agent_id: str, environment: str, settings: ModelSettings | None = None) -> None:
        self.agent_id = agent_id
        self.environment = environment
        self.settings = settings or ModelSettings()
        self._rewards: dict[str, Floats] = {}
        self._current: str | None = None
        self._previous: str | None = None
        self._open: tuple[str, str, int] | None = None  # (previous, current, first seen)

    def observe(
        self, run_id: str, rewards: Sequence[float] | Floats, previous_run_id: str | None = None
    ) -> list[Finding]:
        findings: list[Finding] = []
        values = as_floats(rewards)
        values = values[np.isfinite(values)]
        if run_id not in self._rewards:
            if self._open is not None:  # the regressed run is no longer the current one
                findings.append(self._finding(FindingState.RESOLVED, superseded_by=run_id))
                self._open = None
            self._previous = previous_run_id if previous_run_id in self._rewards else self._current
            self._current = run_id
            self._rewards[run_id] = np.empty(0)
            while len(self._rewards) > self.settings.max_runs:
                oldest = next(run for run in self._rewards if run not in (self._current, self._previous))
                del self._rewards[oldest]
        self._rewards[run_id] = np.concatenate((self._rewards[run_id], values))[-self.settings.max_per_run :]
        if run_id in (self._current, self._previous) and values.size:
            findings.extend(self._compare())
        return findings

    def _compare(self) -> list[Finding]:
        settings = self.settings
        if self._current is None or self._previous is None:
            return []
        before, after = self._rewards[self._previous], self._rewards[self._current]
        if min(before.size, after.size) < settings.min_evaluations:
            return []
        p_value = rank_test(after, before).p_value
        drop = relative_drop(float(before.mean()), float(after.mean()), float(before.std()))
        if self._open is None:
            if p_value < settings.alpha and drop >= settings.min_relative_drop:
                self._open = (self._previous, self._current, after.size)
                return [self._finding(FindingState.OPEN)]
            return []
        if p_value > settings.clear_alpha or drop < settings.min_relative_drop / 2:
            finding = self._finding(FindingState.RESOLVED)
            self._open = None
            return [finding]
        return [self._finding(FindingState.OPEN)]

    def _finding(self, state: FindingState, superseded_by: str | None = None) -> Finding:
        assert self._open is not None
        previous, current, first_seen = self._open
        before, after = self._rewards[previous], self._rewards[current]
        test = rank_test(after, before)
        drop = relative_drop(float(before.mean()), float(after.mean()), float(before.std()))
        evidence: dict[str, Evidence] = {
            "method": "one-sided Mann-Whitney" + (", exact" if test.exact else ", normal approximation"),
            "statistic": test.u,
            "p_value": test.p_value,
            "effect_size": test.cliffs_delta,
            "relative_drop": drop,
            "before": summary(before),
            "after": summary(after),
            "previous_run": previous,
            "current_run": current,
            "superseded_by": superseded_by,
        }
        if state is FindingState.RESOLVED:
            text = f"run {current} superseded by {superseded_by}" if superseded_by else f"run {current} caught up"
        else:
            text = (
                f"run {current} scores {drop:.0%} below run {previous} "
                f"(mean {after.mean():.1f} against {before.mean():.1f} over {after.size} and {before.size})"
            )
        return Finding(
            kind=FindingKind.MODEL_REGRESSION,
            state=state,
            severity=Severity.CRITICAL if drop >= self.settings.critical_drop else Severity.WARNING,
            subject=Subject(self.agent_id, self.environment, run_id=current),
            first_seen=first_seen,
            last_seen=int(after.size),
            evidence=evidence,
            confidence=max(0.0, 1.0 - test.p_value),
            impact=drop,
            summary=text,
            recommendation=Recommendation(
                Action.ROLLBACK,
                "the new model is worse than the one it replaces: serve the previous run's model",
                {"run_id": previous, "regressed_run_id": current},
            ),
        )
