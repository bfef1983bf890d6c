"""Request and response bodies. Requests refuse unknown fields and coerce nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

from tars.domain.errors import InvalidField
from tars.domain.evaluations import Evaluation, EvaluationSeries, EvaluationSummary
from tars.domain.regions import Region

AgentId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
# Row ids, in a path say, within their column's range (422, not a 500 from the database): INTEGER is 32 bits on
# PostgreSQL, BigId 64 (as wide as SQLite binds).
RowId = Annotated[int, Field(ge=1, lt=2**31)]
BigRowId = Annotated[int, Field(ge=1, lt=2**63)]


def check_query_times(**moments: datetime | None) -> None:
    """Times in a query name their zone, and fall within the years 1 to 9999 in UTC, as the database compares them."""
    for name, moment in moments.items():
        if moment is None:
            continue
        if moment.tzinfo is None:
            raise InvalidField(name, "give a time zone, e.g. 2026-01-01T00:00:00Z", location="query")
        try:
            moment.astimezone(UTC)
        except OverflowError:
            raise InvalidField(name, "in UTC this falls outside the years 1 to 9999", location="query") from None


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class WorkerOut(BaseModel):
    name: str
    algorithms: list[str]
    slots: int
    busy: int
    runs: list[str]
    jobs_done: int
    rss_bytes: int
    state: str
    last_seen: datetime
    started_at: datetime


class HealthOut(BaseModel):
    status: str
    version: str
    service: str
    region: str
    workers: list[WorkerOut] | None = Field(default=None, description="Live workers (orchestration only)")


class LoginIn(RequestModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds the access token is valid")
    refresh_token: str = Field(description="Exchange once at POST /api/v1/auth/refresh for a new pair")
    refresh_expires_in: int


class RefreshIn(RequestModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class LogoutIn(RequestModel):
    refresh_token: str | None = Field(
        default=None, max_length=256, description="Ends this token's session; without it, the calling token's"
    )


Username = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
RoleName = Literal["viewer", "operator", "admin"]


class UserIn(RequestModel):
    username: Username
    password: str = Field(min_length=8, max_length=1024)
    role: RoleName = "viewer"


class UserPatch(RequestModel):
    role: RoleName | None = None
    active: bool | None = None


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    role: str
    active: bool
    created_at: datetime


class UserListOut(BaseModel):
    items: list[UserOut]


class ApiKeyIn(RequestModel):
    user: Username
    role: RoleName
    name: str | None = Field(default=None, max_length=128)
    expires_in: str | None = Field(default=None, max_length=16, description="e.g. 30d, 12h, 2w; none: no expiry")


class ApiKeyOut(BaseModel):
    id: int
    prefix: str = Field(description="The key's public part, safe to show and log")
    user_id: int
    name: str | None
    role: str
    active: bool
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(description="The whole key. Shown this once: store it now")


class ApiKeyListOut(BaseModel):
    items: list[ApiKeyOut]


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    created_at: datetime
    actor: str
    actor_user_id: int | None
    credential: str | None
    credential_id: str | None
    address: str | None
    action: str
    target: str | None
    outcome: str
    details: dict[str, Any] | None


class AuditPageOut(BaseModel):
    items: list[AuditEventOut]
    next_before_id: int | None = Field(description="Pass as before_id for the next (older) page")


class TrainIn(RequestModel):
    agent_id: AgentId
    episodes: int | None = Field(default=None, gt=0, le=1_000_000, description="Stop after this many episodes")
    timesteps: int | None = Field(default=None, gt=0, le=100_000_000, description="Stop after this many env steps")
    environment: str | None = Field(default=None, min_length=1, max_length=64)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = Field(default=None, ge=0, lt=2**31)
    from_run: str | None = Field(default=None, max_length=64, description="Continue from this run's checkpoint")


class EvaluateIn(RequestModel):
    run_id: str | None = Field(default=None, max_length=64)
    agent_id: AgentId | None = None
    episodes: int = Field(default=10, gt=0, le=1000)
    seed: int | None = Field(default=None, ge=0, lt=2**31)


class TrainOut(BaseModel):
    run_id: str
    status: str


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    run_id: str = Field(validation_alias="id")
    kind: str
    agent_id: str
    algorithm: str
    environment: str
    status: str
    episodes: int | None
    episodes_done: int
    timesteps: int | None
    timesteps_done: int
    source_run_id: str | None
    cancel_requested: bool
    evaluation_episodes: int
    seed: int
    hyperparameters: dict[str, Any]
    attempts: int
    worker: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RunDetailOut(RunOut):
    has_model: bool = False
    rewards: list[float] = Field(default_factory=list, description="Training reward of each episode so far")
    metrics: dict[str, float] | None = Field(default=None, description="Latest losses, entropy and env-steps/s")
    evaluation: dict[str, Any] | None = Field(default=None, description="Summary of the run's evaluations")


class RunListOut(BaseModel):
    items: list[RunOut]


class EvaluationIn(RequestModel):
    agent_id: AgentId
    environment: str = Field(min_length=1, max_length=64)
    reward: float = Field(allow_inf_nan=False)
    region: Region | None = None
    episode_length: int | None = Field(default=None, ge=0, lt=2**31)  # an INTEGER column: 32 bits on PostgreSQL
    duration_ms: float | None = Field(default=None, ge=0, allow_inf_nan=False)


# Summaries and series are answered as their domain records (dataclasses: pydantic documents and
# serialises them as objects).
EvaluationSummaryOut = EvaluationSummary
EvaluationSeriesOut = EvaluationSeries


class EvaluationBatchIn(RequestModel):
    items: list[EvaluationIn] = Field(min_length=1, max_length=1000, description="Stored all together or not at all")


class EvaluationBatchOut(BaseModel):
    count: int
    ids: list[int] = Field(description="The stored evaluations' ids, in the order of the items")


def response_model_of(record: type[tuple[Any, ...]], name: str) -> type[BaseModel]:
    """A response model with a record's fields, in its order (a NamedTuple would be an array)."""
    fields: dict[str, Any] = {field: (hint, ...) for field, hint in get_type_hints(record).items()}
    return create_model(name, **fields)


EvaluationOut = response_model_of(Evaluation, "EvaluationOut")
EvaluationPageOut = create_model(
    "EvaluationPageOut",
    items=(list[EvaluationOut], ...),  # type: ignore[valid-type]
    next_cursor=(str | None, ...),
)


class AgentIn(RequestModel):
    agent_id: AgentId
    algorithm: str = Field(min_length=1, max_length=32)
    environment: str = Field(min_length=1, max_length=64)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)


class AgentPatch(RequestModel):
    environment: str | None = Field(default=None, min_length=1, max_length=64)
    hyperparameters: dict[str, Any] | None = None


class AgentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    agent_id: str
    algorithm: str
    environment: str
    hyperparameters: dict[str, Any] = Field(description="The agent's own settings")
    effective_hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="What a run on its environment trains with: tuned defaults + its own"
    )
    builtin: bool


class EnvironmentOut(BaseModel):
    environment: str
    action_space: str
    algorithms: list[str]


class EnvironmentListOut(BaseModel):
    items: list[EnvironmentOut]


class AgentListOut(BaseModel):
    items: list[AgentOut]


# What a separate worker reports to the orchestration service about its attempts (see tars.worker.remote).

Count = Annotated[int, Field(ge=0, lt=2**31)]  # INTEGER columns: 32 bits on PostgreSQL
# A report holds what its worker collected while the last one was being recorded.
MAX_REPORT_ITEMS = 2000


class AttemptIn(RequestModel):
    worker: str = Field(min_length=1, max_length=128)


class AttemptOut(BaseModel):
    number: int


class EpisodeIn(RequestModel):
    episode: Annotated[int, Field(ge=1, lt=2**31)]
    reward: float = Field(allow_inf_nan=False)
    length: Count
    timesteps: Annotated[int, Field(ge=0, lt=2**63)]
    metrics: dict[str, float] = Field(default_factory=dict, max_length=64)


class EvaluationEpisodeIn(RequestModel):
    episode: Annotated[int, Field(ge=1, lt=2**31)]
    reward: float = Field(allow_inf_nan=False)
    length: Count
    duration_ms: float = Field(ge=0, allow_inf_nan=False)


class ModelSavedIn(RequestModel):
    path: str = Field(min_length=1, max_length=1024)
    timesteps: Annotated[int, Field(ge=0, lt=2**63)]


class ReportIn(RequestModel):
    seq: Annotated[int, Field(ge=1, lt=2**63)]
    episodes: list[EpisodeIn] = Field(default_factory=list, max_length=MAX_REPORT_ITEMS)
    evaluations: list[EvaluationEpisodeIn] = Field(default_factory=list, max_length=MAX_REPORT_ITEMS)
    model: ModelSavedIn | None = None


class AttemptEndIn(RequestModel):
    # queued: handed back to the queue unfinished (its worker shutting down past its grace period).
    status: Literal["succeeded", "failed", "cancelled", "queued"]
    error: str | None = Field(default=None, max_length=4000)


class CancelCheckOut(BaseModel):
    cancel_requested: bool


class RecoverIn(RequestModel):
    algorithms: list[str] = Field(min_length=1, max_length=16)


class RecoverOut(BaseModel):
    requeued: list[str]
