"""Builds the shared parts every entry point needs from one Settings: database, queue, bus."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from tars.bus.base import EventBus, Invalidations, JobQueue, WorkerRegistry
from tars.bus.memory import DataDirInvalidations, InProcessEventBus, InProcessJobQueue, InProcessWorkerRegistry
from tars.bus.redis_invalidations import RedisInvalidations
from tars.bus.redis_streams import RedisEventBus, RedisJobQueue, RedisWorkerRegistry
from tars.domain.runs import RunStatus
from tars.services.auth import TokenService
from tars.services.credentials import Authenticator
from tars.services.login_sessions import SessionLifetimes
from tars.services.training import requeue_unfinished
from tars.settings import Settings
from tars.storage import schema
from tars.storage.agents import ensure_builtin_agents
from tars.storage.database import SessionFactory, make_engine, make_session_factory, transaction

log = logging.getLogger(__name__)


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
    invalidations: Invalidations
    authenticator: Authenticator
    lifetimes: SessionLifetimes

    def close(self) -> None:
        self.authenticator.close()
        self.invalidations.close()
        self.queue.close()
        self.bus.close()
        self.engine.dispose()


def _recover_lost_jobs(sessions: SessionFactory, queue: RedisJobQueue) -> Callable[[list[str]], None]:
    """Queue again runs the database counts as queued whose jobs Redis no longer has.

    Running runs are left alone: their workers still have them and record their outcome (the
    acknowledgement of a job Redis forgot is a no-op). Were such a worker to die as well, no claim
    could take its run over, as Redis no longer has the job: that run needs `tars cancel` and a
    new submission.
    """

    def recover(algorithms: list[str]) -> None:
        waiting = set().union(*(queue.waiting_run_ids(algorithm) for algorithm in algorithms))
        requeued = requeue_unfinished(
            sessions, queue, statuses={RunStatus.QUEUED}, algorithms=algorithms, already_queued=waiting
        )
        if requeued:
            log.warning("the job queue had lost %d queued run(s); queued them again", len(requeued))

    return recover


def make_invalidations(settings: Settings) -> Invalidations:
    """How this deployment's processes tell each other to forget cached credentials."""
    if settings.redis_url is None:
        return DataDirInvalidations(settings.data_dir)
    return RedisInvalidations(settings.redis_url)


def build_runtime(settings: Settings, *, migrate_schema: bool) -> Runtime:
    if migrate_schema:
        from tars.storage import migrate  # Alembic: only for the process that migrates

        # Without the API's statement timeout: building an index or backfilling takes longer.
        migrating = make_engine(settings.sqlalchemy_url, settings.db_pool(statement_timeout=False))
        try:
            migrate.upgrade(migrating)
        finally:
            migrating.dispose()
    engine = make_engine(settings.sqlalchemy_url, settings.db_pool())
    if not migrate_schema and not schema.is_current(engine):
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
    invalidations: Invalidations
    if settings.redis_url is None:
        queue = InProcessJobQueue()
        bus = InProcessEventBus(window=settings.clear_frequency)
        registry = InProcessWorkerRegistry()
        invalidations = make_invalidations(settings)
        # The in-process queue starts empty: runs the last process did not finish go back in it.
        requeue_unfinished(sessions, queue)
    else:
        queue = RedisJobQueue(
            settings.redis_url,
            claim_idle_seconds=settings.job_claim_idle_seconds,
            algorithms=settings.served_algorithms,
        )
        queue.on_groups_created = _recover_lost_jobs(sessions, queue)
        bus = RedisEventBus(settings.redis_url, window=settings.clear_frequency)
        registry = RedisWorkerRegistry(settings.redis_url)
        invalidations = make_invalidations(settings)
    signing_key, verifying_key = settings.jwt_keys()
    tokens = TokenService(
        signing_key, settings.jwt_expires_seconds, algorithm=settings.jwt_algorithm, verifying_key=verifying_key
    )
    authenticator = Authenticator(
        tokens,
        sessions,
        invalidations,
        cache_seconds=settings.auth_cache_seconds,
        last_use_flush_seconds=settings.api_key_last_used_flush_seconds,
    )
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        queue=queue,
        bus=bus,
        registry=registry,
        tokens=tokens,
        invalidations=invalidations,
        authenticator=authenticator,
        lifetimes=SessionLifetimes(settings.refresh_token_expires_seconds, settings.session_max_seconds),
    )
