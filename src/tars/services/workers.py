"""The live workers, as their heartbeats in the registry tell."""

from __future__ import annotations

from tars.bus.base import WorkerRegistry
from tars.domain.workers import WorkerStatus


class WorkerService:
    def __init__(self, registry: WorkerRegistry) -> None:
        self._registry = registry

    def live(self) -> list[WorkerStatus]:
        """Every worker heard from within its heartbeat's time to live, by name."""
        return self._registry.workers()
