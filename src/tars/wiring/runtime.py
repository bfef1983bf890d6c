"""Builds a process's runtime from one Settings: database, queue, bus, and (on first use) security."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy.exc import IntegrityError

from tars.bus.base import EventBus, JobQueue, WorkerRegistry
from tars.bus.memory import InProcessEventBus, InProcessJobQueue, InProcessWorkerRegistry
from tars.bus.redis_streams import RedisEventBus, RedisJobQueue, RedisWorkerRegistry
from tars.domain.errors import SchemaOutOfDate
from tars.metrics.collectors import watch_database
from tars.services.evaluations import EvaluationService, EvaluationStore
from tars.services.runtime import Runtime
from tars.services.training import recover_lost_jobs, requeue_unfinished
from tars.settings import Settings
from tars.storage import schema
from tars.storage.agents import ensure_builtin_agents
from tars.storage.database import SessionFactory, make_engine, make_session_factory, transaction
from tars.storage.evaluation_store_postgres import PostgresEvaluationStore
from tars.storage.evaluation_store_sync import SyncEvaluationStore
from tars.wiring.ratelimits import rate_limit_storage

if TYPE_CHECKING:
    from tars.services.auth.security import Security


def build_runtime(settings: Settings, *, migrate_schema: bool) -> Runtime:
    if migrate_schema:
        from tars.wiring.database import schema_service  # Alembic: only for the process that migrates

        with schema_service(settings) as migrating:
            migrating.upgrade()
    engine = make_engine(settings.sqlalchemy_url, settings.db_pool())
    if not migrate_schema and not schema.is_current(engine):
        engine.dispose()
        raise SchemaOutOfDate("the database schema is not up to date; run `tars db upgrade` first")
    watch_database(engine)  # the pool's gauges and statement times, read when Prometheus scrapes
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
        bus = InProcessEventBus(window=settings.clear_frequency)
        registry = InProcessWorkerRegistry()
        # The in-process queue starts empty: runs the last process did not finish go back in it.
        requeue_unfinished(sessions, queue)
    else:
        queue = RedisJobQueue(
            settings.redis_url,
            claim_idle_seconds=settings.job_claim_idle_seconds,
            algorithms=settings.served_algorithms,
        )
        queue.on_groups_created = partial(recover_lost_jobs, sessions, queue)
        bus = RedisEventBus(settings.redis_url, window=settings.clear_frequency)
        registry = RedisWorkerRegistry(settings.redis_url)
    store: EvaluationStore
    if engine.dialect.name == "postgresql":
        store = PostgresEvaluationStore(settings.sqlalchemy_url, settings.db_pool())
    else:
        store = SyncEvaluationStore(sessions)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        queue=queue,
        bus=bus,
        registry=registry,
        evaluations=EvaluationService(sessions, bus, store),
        build_security=partial(_build_security, settings, sessions),
        rate_limit_storage=partial(rate_limit_storage, settings),
    )


def _build_security(settings: Settings, sessions: SessionFactory) -> Security:
    from tars.wiring.security import build_security  # the auth stack: only processes that authenticate

    return build_security(settings, sessions)
