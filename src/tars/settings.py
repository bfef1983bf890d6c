"""One validated configuration, built once at an entry point and passed down.

Every field can be set through a ``TARS_``-prefixed environment variable
(``TARS_DATABASE_URL``, ``TARS_REDIS_URL``, ...).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tars.domain.agents import ALGORITHMS
from tars.domain.hyperparameters import MemoryLimits
from tars.domain.regions import REGIONS


@dataclass(frozen=True)
class PoolSettings:
    """How a process uses its database connections."""

    size: int = 10
    max_overflow: int = 10
    # Seconds a request waits for a free connection before giving up (503).
    timeout: float = 10.0
    # Milliseconds a statement may run on PostgreSQL (0: no limit); a runaway query is cancelled.
    statement_timeout_ms: int = 0


# Secrets people paste from tutorials; a token signed with one of these is forgeable by anyone.
_KNOWN_WEAK_SECRETS = {"secret", "changeme", "change-me", "jwt-secret", "your-secret-key", "tars", "password"}
_MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TARS_", extra="ignore")

    data_dir: Path = Field(default=Path(".tars"), description="Where embedded state lives")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir")
    redis_url: str | None = Field(default=None, description="Redis URL; unset means embedded in-process bus")
    # Connections each process keeps to PostgreSQL (and may open beyond, briefly), how long a request
    # waits for one, and how long an API statement may run before PostgreSQL cancels it.
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    db_statement_timeout_ms: int = Field(default=5_000, ge=0)
    region: str = "us-west-2"

    host: str = "127.0.0.1"
    dashboard_port: int = Field(default=3001, ge=1, le=65535)
    orchestration_port: int = Field(default=8094, ge=1, le=65535)
    insight_port: int = Field(default=8090, ge=1, le=65535)
    orchestration_url: str | None = Field(default=None, description="Where the CLI submits training jobs")
    dashboard_url: str | None = Field(default=None, description="Where the CLI follows runs (the live feed, /ws)")

    jwt_secret: SecretStr | None = None
    # HS256 signs with jwt_secret; RS256 and EdDSA with the private key in jwt_private_key_file
    # (PEM), checked with its public half (or jwt_public_key_file).
    jwt_algorithm: Literal["HS256", "RS256", "EdDSA"] = "HS256"
    jwt_private_key_file: Path | None = None
    jwt_public_key_file: Path | None = None
    jwt_expires_seconds: int = Field(default=900, ge=60, description="Access tokens: short-lived")
    refresh_token_expires_seconds: int = Field(default=7 * 86400, ge=300)
    session_max_seconds: int = Field(
        default=30 * 86400, ge=300, description="A login ends after this, refreshed or not"
    )
    # How long a replica may answer from memory what the database says about a key, user or session;
    # revocations reach every replica at once regardless (announced over Redis when distributed).
    auth_cache_seconds: float = Field(default=300.0, ge=0)
    api_key_last_used_flush_seconds: float = Field(default=60.0, gt=0)

    evaluation_episodes: int = Field(default=10, ge=1, le=1000)
    artifact_dir: Path | None = Field(default=None, description="Model checkpoints; default data_dir/artifacts")
    # v1.0.1's memory settings: caps on every agent buffer and every in-process history.
    buffer_max_size: int = Field(default=10_000, ge=1)
    clear_frequency: int = Field(default=1_000, ge=1)
    worker_name: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    worker_concurrency: int = Field(default=1, ge=1, le=64)
    # The agent families (algorithms) this worker trains; empty means all of them.
    worker_algorithms: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Restart after this many jobs (0: never); a safety net, off by default.
    worker_max_jobs: int = Field(default=0, ge=0)
    worker_metrics_port: int = Field(default=9108, ge=0, le=65535, description="0 disables the worker's /metrics")
    # A job whose worker has been silent this long is claimed by another worker.
    job_claim_idle_seconds: float = Field(default=60.0, gt=0)
    worker_heartbeat_seconds: float = Field(default=10.0, gt=0)
    # Matches the Kubernetes terminationGracePeriodSeconds of the worker pods.
    worker_shutdown_grace_seconds: float = Field(default=25.0, ge=0)
    # A separate worker records its attempts through the orchestration service (orchestration_url)
    # with this API key, of an operator; it holds no database client.
    worker_api_key: SecretStr | None = None
    # How long a worker retries a report the orchestration service cannot take (down, restarting)
    # before it hands the job back.
    worker_report_retry_seconds: float = Field(default=120.0, gt=0)

    # Requests per principal (or, without credentials, per client address) and route class; in Redis
    # when distributed, so every replica spends one budget. "N/second|minute|hour", several with ";".
    rate_limit_enabled: bool = True
    rate_limit_login: str = "10/minute"
    rate_limit_read: str = "1200/minute"
    rate_limit_write: str = "300/minute"
    # Failed logins per username, from anywhere: a password is not guessed by spreading the tries.
    rate_limit_login_failures: str = "5/minute"
    # Larger request bodies are refused with 413 before they are read in full.
    max_request_bytes: int = Field(default=1_048_576, ge=1024)
    # Origins whose pages may call the APIs from a browser; none by default (the dashboard is same-origin).
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # The insight engine (docs/insights.md, "The feed"): this replica's name in leases and checkpoints;
    # how long its registration and agent leases last unrenewed (a dead replica's agents wait this long
    # for another), and how often it renews them; how often it reads every owned agent's channel even
    # unannounced; and how many evaluations per (agent, environment, region) rebuild a detector.
    insight_replica: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}", min_length=1)
    insight_lease_seconds: float = Field(default=10.0, gt=0)
    insight_heartbeat_seconds: float = Field(default=2.0, gt=0)
    insight_poll_seconds: float = Field(default=1.0, gt=0)
    insight_replay_evaluations: int = Field(default=1500, ge=0)

    ws_ping_seconds: float = Field(default=30.0, gt=0)
    ws_pong_timeout_seconds: float = Field(default=10.0, gt=0)

    log_level: str = "INFO"
    # "json": one object a line with the current trace and span ids, for a log pipeline.
    log_format: Literal["text", "json"] = "text"
    # Where spans go (OTLP over HTTP, e.g. Jaeger's http://jaeger:4318); none: traces still join up
    # across services and messages, but nothing is exported.
    otlp_endpoint: str | None = None
    # Share of new traces recorded; a consumer records exactly when its producer did.
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        if value not in REGIONS:
            raise ValueError(f"unknown region {value!r}; expected one of {', '.join(REGIONS)}")
        return value

    @field_validator("worker_algorithms", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("worker_algorithms")
    @classmethod
    def _known_algorithms(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in ALGORITHMS]
        if unknown:
            raise ValueError(f"unknown algorithm(s) {', '.join(unknown)}; expected some of {', '.join(ALGORITHMS)}")
        return value

    @field_validator("rate_limit_login", "rate_limit_read", "rate_limit_write", "rate_limit_login_failures")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a rate limit such as 10/minute") from exc
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_secret(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _key_pair_for_asymmetric(self) -> Self:
        if self.jwt_algorithm != "HS256" and self.jwt_private_key_file is None:
            raise ValueError(f"jwt_algorithm {self.jwt_algorithm} needs jwt_private_key_file (a PEM private key)")
        return self

    @model_validator(mode="after")
    def _leases_outlive_renewals(self) -> Self:
        if self.insight_heartbeat_seconds * 2 > self.insight_lease_seconds:
            raise ValueError(
                "insight_heartbeat_seconds must be at most half of insight_lease_seconds: "
                "a lease renewed late would lapse while its replica still works"
            )
        return self

    @model_validator(mode="after")
    def _resolve_paths(self) -> Self:
        self.data_dir = self.data_dir.expanduser().resolve()
        self.artifact_dir = (self.artifact_dir or self.data_dir / "artifacts").expanduser().resolve()
        return self

    @property
    def artifacts(self) -> Path:
        assert self.artifact_dir is not None  # resolved by the validator
        return self.artifact_dir

    @property
    def memory_limits(self) -> MemoryLimits:
        return MemoryLimits(buffer_max_size=self.buffer_max_size, clear_frequency=self.clear_frequency)

    @property
    def served_algorithms(self) -> tuple[str, ...]:
        return tuple(self.worker_algorithms) or tuple(ALGORITHMS)

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url is None:
            return f"sqlite:///{self.data_dir / 'tars.db'}"
        url = self.database_url
        # Plain postgres URLs would pick psycopg2, which we do not ship.
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    def db_pool(self, *, statement_timeout: bool = True) -> PoolSettings:
        """Pool settings; migrations and workers' long writes pass statement_timeout=False."""
        return PoolSettings(
            size=self.db_pool_size,
            max_overflow=self.db_max_overflow,
            timeout=self.db_pool_timeout_seconds,
            statement_timeout_ms=self.db_statement_timeout_ms if statement_timeout else 0,
        )

    @property
    def embedded(self) -> bool:
        return self.redis_url is None

    @property
    def dashboard_base_url(self) -> str:
        if self.dashboard_url:
            return self.dashboard_url.rstrip("/")
        return f"http://{_client_host(self.host)}:{self.dashboard_port}"

    @property
    def insight_base_url(self) -> str:
        return f"http://{_client_host(self.host)}:{self.insight_port}"

    @property
    def orchestration_base_url(self) -> str:
        if self.orchestration_url:
            return self.orchestration_url.rstrip("/")
        return f"http://{_client_host(self.host)}:{self.orchestration_port}"


def check_secret(secret: str) -> None:
    """Refuse a JWT secret anyone could guess."""
    if secret.lower() in _KNOWN_WEAK_SECRETS or len(secret) < _MIN_SECRET_LENGTH:
        raise ValueError(f"the JWT secret must be at least {_MIN_SECRET_LENGTH} characters and not a default")


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host
