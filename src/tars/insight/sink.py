"""Until the insight records are wired in, the engine's observations are logged: what it would store."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tars.domain.insights import Observation

log = logging.getLogger("tars.insight.observations")


class LoggedInsights:
    """An ``InsightSink`` that writes each observation to the log (the insight service stores them)."""

    def apply(self, observations: Sequence[Observation]) -> None:
        for observation in observations:
            finding = observation.finding
            log.info(
                "%s %s %s %s since %s: %s",
                finding.state.value,
                finding.severity.value,
                finding.kind.value,
                finding.subject,
                observation.first_seen_at.isoformat(),
                finding.summary,
            )
