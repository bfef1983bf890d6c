"""Credential invalidations through a file in the data directory: the embedded mode's."""

from __future__ import annotations

import time
from pathlib import Path

from tars.services.auth.invalidations import InvalidationHandler


class DataDirInvalidations:
    """Embedded: the APIs share this process, but the command line (``tars apikeys revoke``) runs in
    another. Announcements are appended to a file in the data directory; every check compares the
    file's size and time with what was seen, a stat call, and on a change all caches are dropped."""

    reliable = True
    MAX_BYTES = 65_536

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / "auth-invalidations"
        self._handlers: list[InvalidationHandler] = []
        self._seen = self._stamp()

    def announce(self, topic: str) -> None:
        for handler in list(self._handlers):
            handler(topic)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        mode = "w" if self._path.exists() and self._path.stat().st_size > self.MAX_BYTES else "a"
        with self._path.open(mode) as handle:
            handle.write(f"{time.time():.6f} {topic}\n")
        self._seen = self._stamp()

    def listen(self, handler: InvalidationHandler) -> None:
        self._handlers.append(handler)

    def check(self) -> None:
        stamp = self._stamp()
        if stamp != self._seen:
            self._seen = stamp
            for handler in list(self._handlers):
                handler(None)

    def _stamp(self) -> tuple[int, int]:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return (0, 0)
        return (stat.st_mtime_ns, stat.st_size)

    def close(self) -> None:
        self._handlers.clear()
