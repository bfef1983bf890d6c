"""What the insight engine finds: a condition worth an operator's attention, with its evidence and
what to do about it.

The detectors (``tars.insight.detectors``) produce findings; the engine hands them to the insight
service as observations (their positions mapped to times), which keeps one unresolved `Insight` per
subject and kind, updates it as evidence grows, and resolves it when the condition clears. They live
in the domain so that the service's use cases, below the detectors' package, read and store the
same declarations; the API, events and the CLI show the same `Insight`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from tars.domain.errors import Conflict

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


# What the service keeps of findings: one record per condition of a subject, from when it was first
# seen until it clears, with what operators said of it.


class InsightState(StrEnum):
    # The condition holds and nobody has looked at it yet.
    OPEN = "open"
    # Someone is on it; evidence keeps coming in.
    ACKNOWLEDGED = "acknowledged"
    # An operator judged it not worth attention: evidence is kept up to date quietly, and it is not
    # opened again until the condition clears.
    DISMISSED = "dismissed"
    # The condition cleared (the detector said so). Final: the next time the condition is seen, a
    # new insight opens.
    RESOLVED = "resolved"


# Insights that still hold: at most one of them per kind and subject.
UNRESOLVED = (InsightState.OPEN, InsightState.ACKNOWLEDGED, InsightState.DISMISSED)
# Insights that want attention: what `active` lists and the open-insights gauge counts.
ACTIVE = (InsightState.OPEN, InsightState.ACKNOWLEDGED)


class StateFilter(StrEnum):
    """A list's ``state`` filter: one state, or ``active`` (open and acknowledged)."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    DISMISSED = "dismissed"
    RESOLVED = "resolved"
    ACTIVE = "active"

    @property
    def states(self) -> tuple[InsightState, ...]:
        return ACTIVE if self is StateFilter.ACTIVE else (InsightState(self.value),)


MAX_NOTE_LENGTH = 500


class InsightResolved(Conflict):
    """An operator acted on an insight whose condition has already cleared (the API's 409)."""

    def __init__(self, insight_id: int, action: str) -> None:
        super().__init__(
            f"insight {insight_id} is {InsightState.RESOLVED.value}: only an open, acknowledged or dismissed "
            f"insight can be {action}"
        )
        self.insight_id = insight_id
        self.state = InsightState.RESOLVED


@dataclass(frozen=True)
class Observation:
    """A finding as the engine hands it to the insight service: its stream positions mapped to the
    times of the observations at those positions (``first_seen_at`` where the condition began,
    ``last_seen_at`` the latest observation its evidence covers; for a resolved finding, when it
    cleared). Times are timezone-aware."""

    finding: Finding
    first_seen_at: datetime
    last_seen_at: datetime

    def __post_init__(self) -> None:
        if self.first_seen_at.tzinfo is None or self.last_seen_at.tzinfo is None:
            raise ValueError("an observation's times must be timezone-aware")
        if self.first_seen_at > self.last_seen_at:
            raise ValueError("an observation is first seen before it is last seen")


@dataclass(frozen=True)
class Insight:
    """One condition of one subject, as stored, listed by the API, sent on the live feed and shown by
    the CLI. The subject's fields a kind does not concern are None; non-finite numbers in the
    evidence are written as the strings ``"inf"``, ``"-inf"`` and ``"nan"``, and an impact that is
    not finite (a p95 rise from a 0 ms baseline) is None."""

    id: int
    kind: FindingKind
    severity: Severity
    state: InsightState
    agent_id: str
    environment: str | None
    region: str | None
    run_id: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    # When the condition cleared (the time of the observation that showed it), while resolved.
    resolved_at: datetime | None
    evidence: dict[str, Evidence]
    confidence: float
    impact: float | None
    summary: str
    recommendation: Recommendation
    # The detector's sentence on why it cleared; the summary keeps saying what was wrong.
    resolution: str | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    dismissed_by: str | None
    dismissed_at: datetime | None
    # The last note an operator left when acknowledging or dismissing it.
    note: str | None
    updated_at: datetime

    @property
    def subject(self) -> Subject:
        return Subject(self.agent_id, self.environment, self.region, self.run_id)


@dataclass(frozen=True)
class InsightFilter:
    """Which insights a page lists: all of those given must match; since inclusive, until not (on
    ``first_seen_at``)."""

    state: StateFilter | None = None
    kind: FindingKind | None = None
    severity: Severity | None = None
    agent_id: str | None = None
    environment: str | None = None
    region: str | None = None
    run_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class InsightPage:
    items: list[Insight]
    # Pass as ``cursor`` for the next (older) page; None on the last.
    next_cursor: str | None
