"""The one place that builds concrete implementations from `Settings`: SQLite or PostgreSQL,
the in-process bus or Redis, a local or a remote recorder. Entry points (the CLI, tests,
benchmarks) call it; nothing below it knows which implementation it was given."""

from tars.wiring.ratelimits import rate_limit_storage
from tars.wiring.runtime import SchemaOutOfDate, build_runtime
from tars.wiring.security import build_security, make_invalidations, open_accounts

__all__ = [
    "SchemaOutOfDate",
    "build_runtime",
    "build_security",
    "make_invalidations",
    "open_accounts",
    "rate_limit_storage",
]
