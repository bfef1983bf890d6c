"""What the insight engine finds: a condition worth an operator's attention, with its evidence and
what to do about it.

The detectors (``tars.insight.detectors``) produce these; the insight service stores one open
record per subject and kind, updates it as evidence grows, and resolves it when the condition
clears. They live in the domain so that the service's use cases, below the detectors' package,
read and store the same declaration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

# One number, a label, or a small summary (``{"mean": ..., "median": ..., "n": ...}``): what JSON,
# a database column and an event carry as they are.
Summary = dict[str, float | int | None]
Evidence = float | int | str | bool | None | Summary


class FindingKind(StrEnum):
    REWARD_REGRESSION = "reward_regression"
    REGION_DIVERGENCE = "region_divergence"
    MODEL_REGRESSION = "model_regression"
    NON_FINITE_LOSS = "non_finite_loss"
    VALUE_LOSS_EXPLOSION = "value_loss_explosion"
    ENTROPY_COLLAPSE = "entropy_collapse"
    LEARNING_STALL = "learning_stall"
    THROUGHPUT_DROP = "throughput_drop"
    FAILURE_RATE_SPIKE = "failure_rate_spike"
    DURATION_P95_RISE = "duration_p95_rise"


class FindingState(StrEnum):
    # Open findings are emitted when the condition is first seen and again as evidence grows;
    # a resolved one once, when it clears.
    OPEN = "open"
    RESOLVED = "resolved"


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"


class Action(StrEnum):
    RETRAIN = "retrain"
    ROLLBACK = "rollback"
    INVESTIGATE_REGION = "investigate_region"
    INVESTIGATE = "investigate"


@dataclass(frozen=True)
class Subject:
    """What a finding is about; the fields a kind does not concern are None."""

    agent_id: str
    environment: str | None = None
    region: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class Recommendation:
    """What the platform (or an operator) can do: ``parameters`` name its target, e.g. the run to
    roll back to, the region to look at, or the hyperparameter to change before retraining."""

    action: Action
    reason: str
    parameters: dict[str, str | float | int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    """One detector's view of one condition of one subject.

    ``first_seen`` and ``last_seen`` are positions in the stream the detector was fed, from 1 (what
    a position counts is the detector's: rewards used, evaluations, episode numbers; docs/insights.md):
    where the condition is estimated to have begun, and the latest observation the evidence covers.
    The service maps them to times. ``impact`` is how bad it is in the kind's own unit, larger is worse
    (docs/insights.md: a relative reward drop, a rise in failure rate, ...); ``confidence`` is in 0..1.
    """

    kind: FindingKind
    state: FindingState
    severity: Severity
    subject: Subject
    first_seen: int
    last_seen: int
    evidence: dict[str, Evidence]
    confidence: float
    impact: float
    summary: str
    recommendation: Recommendation

    @property
    def key(self) -> tuple[FindingKind, Subject]:
        """One open finding per subject and kind: the key the service keeps it under."""
        return self.kind, self.subject


@dataclass(frozen=True)
class Observation:
    """A finding as the engine hands it on: its stream positions mapped to the times of the
    evaluations (or episodes) at those positions. Replaying the same observation changes nothing."""

    finding: Finding
    first_seen_at: datetime
    last_seen_at: datetime
