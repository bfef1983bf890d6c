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
from tars.settings import Settings
from tars.storage.database import SessionFactory

if TYPE_CHECKING:
    from tars.services.evaluations import EvaluationService
    from tars.services.security import Security


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

    @cached_property
    def security(self) -> Security:
        return self.build_security()

    def close(self) -> None:
        if "security" in self.__dict__:
            self.security.close()
        self.queue.close()
        self.bus.close()
        self.engine.dispose()
