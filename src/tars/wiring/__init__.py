"""The one place that builds concrete implementations from `Settings`: SQLite or PostgreSQL,
the in-process bus or Redis, a local or a remote recorder. Entry points (the CLI, tests,
benchmarks) call it; nothing below it knows which implementation it was given.

Its modules are imported on first use, not here: a separate worker imports `tars.wiring.worker`
and must not load the database layer that `tars.wiring.runtime` builds.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tars.wiring.runtime import SchemaOutOfDate, build_runtime
    from tars.wiring.security import build_security, make_invalidations

__all__ = ["SchemaOutOfDate", "build_runtime", "build_security", "make_invalidations"]

_HOMES = {
    "SchemaOutOfDate": "tars.wiring.runtime",
    "build_runtime": "tars.wiring.runtime",
    "build_security": "tars.wiring.security",
    "make_invalidations": "tars.wiring.security",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'tars.wiring' has no attribute {name!r}")
