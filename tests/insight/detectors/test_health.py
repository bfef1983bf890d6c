"""Evaluation health: failure-rate spikes and a rising duration p95, against the stream's own baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tars.domain.insights import Action, Finding, FindingKind, FindingState, Severity, Subject
from tars.insight.detectors.health import EvaluationHealth

SUBJECT = Subject("dqn", "CartPole-v1", "ap-southeast-1")


def feed(
    detector: EvaluationHealth,
    rng: np.random.Generator,
    n: int,
    failure_rate: float = 0.01,
    latency_ms: float = 20.0,
) -> list[Finding]:
    found: list[Finding] = []
    for _ in range(n // 10):
        found += detector.observe(rng.random(10) < failure_rate, rng.lognormal(math.log(latency_ms), 0.5, 10))
    return found


def test_a_failure_spike_opens_and_resolves() -> None:
    rng = np.random.default_rng(1)
    detector = EvaluationHealth(SUBJECT)
    assert feed(detector, rng, 1500) == []
    spike = feed(detector, rng, 200, failure_rate=0.3)
    assert spike and {f.kind for f in spike} == {FindingKind.FAILURE_RATE_SPIKE}
    first = spike[0]
    assert first.state is FindingState.OPEN
    # Updated as the recent window fills with the spike: 30 % failing is critical by then.
    assert spike[-1].severity is Severity.CRITICAL and spike[-1].first_seen == first.first_seen
    assert 1500 < first.last_seen <= 1600
    assert first.evidence["p_value"] < 1e-5  # type: ignore[operator]
    assert first.evidence["recent_failure_rate"] > first.evidence["baseline_failure_rate"]  # type: ignore[operator]
    assert first.evidence["before"]["n"] == 1000  # type: ignore[index]
    assert first.recommendation.action is Action.INVESTIGATE_REGION
    assert first.recommendation.parameters == {"region": "ap-southeast-1"}
    after = feed(detector, rng, 300)
    assert [f.state for f in after][-1] is FindingState.RESOLVED
    assert after[-1].first_seen == first.first_seen


def test_a_duration_p95_rise_opens_and_resolves() -> None:
    rng = np.random.default_rng(2)
    detector = EvaluationHealth(SUBJECT)
    assert feed(detector, rng, 1500) == []
    slow = feed(detector, rng, 200, latency_ms=50.0)
    assert slow and slow[0].kind is FindingKind.DURATION_P95_RISE
    assert slow[0].evidence["recent_p95_ms"] > 1.25 * slow[0].evidence["baseline_p95_ms"]  # type: ignore[operator]
    assert slow[0].impact == pytest.approx(slow[0].evidence["ratio"] - 1)  # type: ignore[operator]
    assert slow[-1].severity is Severity.CRITICAL  # 2.5 x the latency, once the window holds only it
    after = feed(detector, rng, 300)
    assert [f.state for f in after][-1] is FindingState.RESOLVED


@pytest.mark.parametrize("seed", range(20))
def test_a_steady_stream_raises_nothing(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    assert feed(EvaluationHealth(SUBJECT), rng, 5000, failure_rate=float(rng.uniform(0.0, 0.1))) == []


def test_a_small_rise_in_failures_is_not_news() -> None:
    rng = np.random.default_rng(3)
    detector = EvaluationHealth(SUBJECT)
    feed(detector, rng, 1500, failure_rate=0.01)
    assert feed(detector, rng, 500, failure_rate=0.03) == []


def test_too_little_data_is_no_finding() -> None:
    detector = EvaluationHealth(SUBJECT)
    assert detector.observe([True] * 250, [1000.0] * 250) == []


def test_unknown_durations_are_ignored_and_mismatched_inputs_refused() -> None:
    rng = np.random.default_rng(4)
    detector = EvaluationHealth(Subject("dqn", "CartPole-v1"))
    for _ in range(200):
        durations = rng.lognormal(3.0, 0.5, 10)
        durations[::3] = math.nan
        assert detector.observe(rng.random(10) < 0.01, durations) == []
    with pytest.raises(ValueError, match="3 outcomes but 2 durations"):
        detector.observe([False] * 3, [1.0, 2.0])
