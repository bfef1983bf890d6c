"""Where rate-limit counters live: in memory (embedded), or in Redis so every replica spends one
budget (distributed)."""

from __future__ import annotations

from limits.aio.storage import Storage
from limits.storage import storage_from_string

from tars.bus import keys
from tars.settings import Settings


def rate_limit_storage(settings: Settings) -> Storage:
    if settings.redis_url is None:
        storage = storage_from_string("async+memory://")
    else:
        storage = storage_from_string(
            "async+" + settings.redis_url, key_prefix=keys.RATE_LIMIT_PREFIX, implementation="redispy"
        )
    assert isinstance(storage, Storage)  # an async+ scheme gives the asyncio flavour
    return storage
