"""Assembles the two services from their routers; nothing else happens here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from tars.api.errors import install_error_handlers
from tars.api.observability import RequestMetricsMiddleware, SecurityHeadersMiddleware
from tars.api.observability import router as metrics_router
from tars.api.ratelimit import RateLimitMiddleware, RateLimits
from tars.api.realtime import Hub
from tars.api.routes import (
    agents,
    apikeys,
    attempts,
    audit,
    auth,
    environments,
    evaluations,
    health,
    insights,
    runs,
    train,
    ui,
    users,
    ws,
)
from tars.metrics.collectors import watch_queue
from tars.services.runtime import Runtime
from tars.version import __version__

DASHBOARD_API = "dashboard-api"
ORCHESTRATION = "orchestration"


def _base_app(
    runtime: Runtime, service: str, description: str, rate_limits: RateLimits | None, **kwargs: object
) -> FastAPI:
    settings = runtime.settings
    security = runtime.security  # built now, so a key pair that does not fit stops the service at start
    app = FastAPI(
        title=f"T.A.R.S. {service}",
        version=__version__,
        description=description,
        max_body_size=settings.max_request_bytes,
        # Not FastAPI's own OpenTelemetry: even with one span a request it cost the hot list endpoint a
        # quarter of its throughput. RequestMetricsMiddleware makes the SERVER span instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        **kwargs,  # type: ignore[arg-type]
    )
    app.state.runtime = runtime
    app.state.service_name = service
    app.state.reports_workers = service == ORCHESTRATION
    app.add_middleware(RequestMetricsMiddleware, service=service)
    app.add_middleware(SecurityHeadersMiddleware)
    if rate_limits is None and settings.rate_limit_enabled:
        rate_limits = RateLimits(settings, runtime.rate_limit_storage())
    app.state.rate_limits = rate_limits
    if app.state.rate_limits is not None:
        app.add_middleware(RateLimitMiddleware, limits=app.state.rate_limits, authenticator=security.authenticator)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics_router)
    app.include_router(auth.router)
    # Administration on both services: an operator's tools reach whichever they are given.
    for router in (users.router, apikeys.router, audit.router):
        app.include_router(router)
    return app


def shared_rate_limits(runtime: Runtime) -> RateLimits | None:
    """One budget for services that run in one process (`tars up`), so a client cannot spend it
    twice by calling both; apart, they share it through Redis or not at all (embedded)."""
    return RateLimits(runtime.settings, runtime.rate_limit_storage()) if runtime.settings.rate_limit_enabled else None


def create_dashboard_app(runtime: Runtime, *, rate_limits: RateLimits | None = None) -> FastAPI:
    hub = Hub(runtime.live, runtime.security.watch)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Opened here, not with the runtime: the evaluation reader's pool belongs to this loop.
        await runtime.evaluations.start()
        try:
            yield
        finally:
            await hub.stop()
            await runtime.evaluations.close()

    app = _base_app(
        runtime,
        DASHBOARD_API,
        "Evaluations, agents, runs, insights and the live dashboard.",
        rate_limits,
        lifespan=lifespan,
    )
    app.state.hub = hub
    # The dashboard's own page starts training too, from its origin.
    for router in (
        evaluations.router,
        agents.router,
        environments.router,
        runs.router,
        insights.router,
        train.router,
        ws.router,
        ui.router,
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=ui.STATIC_DIR), name="static")
    # The hottest read and write, matched first.
    app.router.routes[:0] = [evaluations.list_route, evaluations.create_route, evaluations.create_batch_route]
    return app


def create_orchestration_app(runtime: Runtime, *, rate_limits: RateLimits | None = None) -> FastAPI:
    app = _base_app(runtime, ORCHESTRATION, "Starts training jobs and reports on runs.", rate_limits)
    watch_queue(runtime.training.queue_stats)  # the queue's gauges come from the service that fills it
    for router in (train.router, runs.router, agents.router, environments.router, attempts.router):
        app.include_router(router)
    return app
