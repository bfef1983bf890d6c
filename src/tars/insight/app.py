"""The insight-engine service: the engine running beside /health and /metrics; nothing else happens here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tars.api.errors import install_error_handlers
from tars.api.observability import RequestMetricsMiddleware, SecurityHeadersMiddleware
from tars.api.observability import router as metrics_router
from tars.api.routes import health
from tars.insight.engine import CountsOpenInsights, InsightEngine
from tars.metrics.collectors import watch_insight_engine
from tars.services.runtime import Runtime
from tars.version import __version__

INSIGHT_ENGINE = "insight-engine"

log = logging.getLogger(__name__)


def create_insight_app(runtime: Runtime, engine: InsightEngine) -> FastAPI:
    """The engine starts with the app and, when the app stops, hands its agents back and leaves."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(engine.run(), name=INSIGHT_ENGINE)
        task.add_done_callback(_report_crash)
        try:
            yield
        finally:
            engine.stop()
            await asyncio.gather(task, return_exceptions=True)
            engine.close()

    app = FastAPI(
        title=f"T.A.R.S. {INSIGHT_ENGINE}",
        version=__version__,
        description="Watches every evaluation and training episode and says what changed (docs/insights.md).",
        max_body_size=runtime.settings.max_request_bytes,
        telemetry={"tracing": False, "metrics": False, "logs": False},
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.service_name = INSIGHT_ENGINE
    app.state.reports_workers = False
    app.state.engine = engine
    app.add_middleware(RequestMetricsMiddleware, service=INSIGHT_ENGINE)
    app.add_middleware(SecurityHeadersMiddleware)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(metrics_router)
    sink = engine.sink
    watch_insight_engine(engine.lag, sink.open_counts if isinstance(sink, CountsOpenInsights) else None)
    return app


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the insight engine stopped", exc_info=task.exception())
