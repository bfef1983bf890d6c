"""What a running T.A.R.S. process holds: its settings and the services built from them.

Built by `tars.wiring` alone, which picks the concrete implementations (SQLite or PostgreSQL,
in-process or Redis); everything above the services layer takes a `Runtime` and never builds one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from tars.bus.base import EventBus, JobQueue, WorkerRegistry
from tars.services.agents import AgentService
from tars.services.audit import AuditLog
from tars.services.insights import InsightService
from tars.services.live import LiveEvents
from tars.services.recording import AttemptService
from tars.services.runs import RunService
from tars.services.training import TrainingService
from tars.services.workers import WorkerService
from tars.settings import Settings
from tars.storage.database import SessionFactory

if TYPE_CHECKING:
    from limits.aio.storage import Storage

    from tars.services.auth.security import Security
    from tars.services.evaluations import EvaluationService


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: SessionFactory
    queue: JobQueue
    bus: EventBus
    registry: WorkerRegistry
    evaluations: EvaluationService = field(repr=False, kw_only=True)
    # Authentication is built on first use: a worker never authenticates anyone, and the JWT, argon2
    # and cryptography stack would cost each worker process about 11 MB.
    build_security: Callable[[], Security] = field(repr=False, kw_only=True)
    # Where an app's rate-limit counters live (a new store each call: apps in one process share one
    # only when handed the same limits).
    rate_limit_storage: Callable[[], Storage] = field(repr=False, kw_only=True)

    @cached_property
    def security(self) -> Security:
        return self.build_security()

    @cached_property
    def live(self) -> LiveEvents:
        return LiveEvents(self.bus)

    @cached_property
    def audit_log(self) -> AuditLog:
        return AuditLog(self.sessions)

    # The use cases entry points call: each opens its own unit of work and returns domain records.

    @cached_property
    def training(self) -> TrainingService:
        return TrainingService(
            self.sessions,
            self.queue,
            self.bus,
            evaluation_episodes=self.settings.evaluation_episodes,
            limits=self.settings.memory_limits,
        )

    @cached_property
    def runs(self) -> RunService:
        return RunService(self.sessions)

    @cached_property
    def agents(self) -> AgentService:
        return AgentService(self.sessions, self.settings.memory_limits)

    @cached_property
    def attempts(self) -> AttemptService:
        """Where separate workers' attempts are recorded; their checkpoints lie in the artifact store."""
        return AttemptService(self.sessions, self.bus, self.settings.region, self.settings.artifacts)

    @cached_property
    def insights(self) -> InsightService:
        """What the insight engine found: applied by the engine, read and acted on by operators."""
        return InsightService(self.sessions, self.bus)

    @cached_property
    def workers(self) -> WorkerService:
        return WorkerService(self.registry)

    def close(self) -> None:
        if "security" in self.__dict__:
            self.security.close()
        self.queue.close()
        self.bus.close()
        self.engine.dispose()
