"""Leases in this process: the embedded mode's real implementation, where one replica owns every unit."""

from __future__ import annotations

import threading
import time


class InProcessLeases:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replicas: dict[str, float] = {}
        self._leases: dict[str, tuple[str, float]] = {}

    def register(self, replica: str, ttl: float) -> None:
        with self._lock:
            self._replicas[replica] = time.monotonic() + ttl

    def replicas(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            self._replicas = {name: until for name, until in self._replicas.items() if until > now}
            return sorted(self._replicas)

    def deregister(self, replica: str) -> None:
        with self._lock:
            self._replicas.pop(replica, None)

    def acquire(self, unit: str, replica: str, ttl: float) -> bool:
        now = time.monotonic()
        with self._lock:
            holder = self._leases.get(unit)
            if holder is not None and holder[0] != replica and holder[1] > now:
                return False
            self._leases[unit] = (replica, now + ttl)
            return True

    def renew(self, units: list[str], replica: str, ttl: float) -> set[str]:
        now = time.monotonic()
        held = set()
        with self._lock:
            for unit in units:
                holder = self._leases.get(unit)
                if holder is not None and holder[0] == replica and holder[1] > now:
                    self._leases[unit] = (replica, now + ttl)
                    held.add(unit)
        return held

    def release(self, units: list[str], replica: str) -> None:
        with self._lock:
            for unit in units:
                holder = self._leases.get(unit)
                if holder is not None and holder[0] == replica:
                    del self._leases[unit]

    def close(self) -> None:
        return None
