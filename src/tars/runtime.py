"""Builds the shared parts every entry point needs from one Settings: database, queue, bus."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from tars.bus.base import EventBus, JobQueue, WorkerRegistry
from tars.bus.memory import InProcessEventBus, InProcessJobQueue, InProcessWorkerRegistry
from tars.bus.redis_streams import RedisEventBus, RedisJobQueue, RedisWorkerRegistry
from tars.services.auth import TokenService
from tars.services.training import requeue_unfinished
from tars.settings import Settings
from tars.storage import migrate
from tars.storage.agents import ensure_builtin_agents
from tars.storage.database import SessionFactory, make_engine, make_session_factory, transaction


class SchemaOutOfDate(RuntimeError):
    pass


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: SessionFactory
    queue: JobQueue
    bus: EventBus
    registry: WorkerRegistry
    tokens: TokenService

    def close(self) -> None:
        self.queue.close()
        self.bus.close()
        self.engine.dispose()


def build_runtime(settings: Settings, *, migrate_schema: bool) -> Runtime:
    engine = make_engine(settings.sqlalchemy_url)
    if migrate_schema:
        migrate.upgrade(engine)
    elif not migrate.is_current(engine):
        engine.dispose()
        raise SchemaOutOfDate("the database schema is not up to date; run `tars db upgrade` first")
    sessions = make_session_factory(engine)
    try:
        with transaction(sessions) as session:
            ensure_builtin_agents(session)
    except IntegrityError:
        pass  # another process starting at the same moment inserted them first
    queue: JobQueue
    bus: EventBus
    registry: WorkerRegistry
    if settings.redis_url is None:
        queue = InProcessJobQueue()
        bus = InProcessEventBus(backlog=settings.clear_frequency)
        registry = InProcessWorkerRegistry()
        # The in-process queue starts empty: runs the last process did not finish go back in it.
        requeue_unfinished(sessions, queue)
    else:
        queue = RedisJobQueue(
            settings.redis_url,
            claim_idle_seconds=settings.job_claim_idle_seconds,
            algorithms=settings.served_algorithms,
        )
        bus = RedisEventBus(settings.redis_url)
        registry = RedisWorkerRegistry(settings.redis_url)
    tokens = TokenService(settings.jwt_signing_secret(), settings.jwt_expires_seconds)
    return Runtime(
        settings=settings, engine=engine, sessions=sessions, queue=queue, bus=bus, registry=registry, tokens=tokens
    )
