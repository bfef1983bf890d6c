"""Request and response bodies. Requests refuse unknown fields and coerce nothing."""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_type_hints

import pydantic.dataclasses
from pydantic import BaseModel, ConfigDict, Field, create_model

from tars.domain.agents import Agent
from tars.domain.audit import AuditEvent
from tars.domain.errors import InvalidField
from tars.domain.evaluations import Evaluation, EvaluationSeries, EvaluationSummary
from tars.domain.insights import MAX_NOTE_LENGTH, Insight, InsightPage
from tars.domain.regions import Region
from tars.domain.runs import Run
from tars.domain.users import ApiKey, User
from tars.domain.workers import MOMENTS, WorkerStatus

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


def _worker_out() -> type[BaseModel]:
    """The heartbeat record as a response: its moments (seconds since the epoch) shown as times."""
    hints = get_type_hints(WorkerStatus)
    fields: dict[str, Any] = {
        f.name: (datetime if f.name in MOMENTS else hints[f.name], ...) for f in dataclass_fields(WorkerStatus)
    }
    return create_model("WorkerOut", **fields)


if TYPE_CHECKING:
    WorkerOut = BaseModel
else:
    WorkerOut = _worker_out()


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


# Responses are the services' records themselves: one declaration each, in tars.domain.
UserOut = User


class UserListOut(BaseModel):
    items: list[UserOut]


class ApiKeyIn(RequestModel):
    user: Username
    role: RoleName
    name: str | None = Field(default=None, max_length=128)
    expires_in: str | None = Field(default=None, max_length=16, description="e.g. 30d, 12h, 2w; none: no expiry")


ApiKeyOut = ApiKey


@pydantic.dataclasses.dataclass(frozen=True)
class ApiKeyCreatedOut(ApiKey):
    key: str = Field(description="The whole key. Shown this once: store it now")


class ApiKeyListOut(BaseModel):
    items: list[ApiKeyOut]


AuditEventOut = AuditEvent


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


# Runs and agents go out as their domain records (tars.domain.runs.Run, RunDetail; tars.domain.agents.Agent).


class RunListOut(BaseModel):
    items: list[Run]


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


class EnvironmentOut(BaseModel):
    environment: str
    action_space: str
    algorithms: list[str]


class EnvironmentListOut(BaseModel):
    items: list[EnvironmentOut]


class AgentListOut(BaseModel):
    items: list[Agent]


# What a separate worker reports to the orchestration service about its attempts (see tars.worker.remote).

# A report travels as the domain record itself (tars.domain.progress.Report), read by one schema
# derived from it (tars.services.reports).


class AttemptIn(RequestModel):
    worker: str = Field(min_length=1, max_length=128)


class AttemptOut(BaseModel):
    number: int


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


class InsightNoteIn(RequestModel):
    note: str | None = Field(
        default=None, max_length=MAX_NOTE_LENGTH, description="Why: kept with the insight and in the audit log"
    )


# Insights go out as their domain records (tars.domain.insights.Insight, InsightPage).
InsightOut = Insight
InsightPageOut = InsightPage
