"""The T.A.R.S. Grafana dashboards, as code: `deploy/grafana/generate.py` writes them out as JSON."""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.models.dashboard import Dashboard

from . import agents, canary, database, overview
from .panels import render

# uid -> builder; each dashboard is written to dashboards/<uid>.json.
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    overview.UID: overview.build,
    agents.UID: agents.build,
    database.UID: database.build,
    canary.UID: canary.build,
}


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{uid}.json": render(build()) for uid, build in DASHBOARDS.items()}
