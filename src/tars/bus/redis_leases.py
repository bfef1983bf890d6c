"""Leases in Redis: replicas in other processes and on other hosts split the units between them.

A replica registers as a key with a TTL, named in a set so that listing them reads that set, not the
keyspace; a lease is a key holding its holder's name, taken with SET NX PX and extended or released
only by its holder (a script checks the holder and acts in one step).
"""

from __future__ import annotations

from typing import Any

import redis

from tars.bus import keys

# Extends each lease in KEYS held by ARGV[1] by ARGV[2] ms; the 1-based positions of those held.
_RENEW = """
local held = {}
for index, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    held[#held + 1] = index
  end
end
return held
"""
# Takes the lease in KEYS[1] for ARGV[1] for ARGV[2] ms, or extends it if ARGV[1] holds it: 1 if held.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 0
"""


class RedisLeases:
    def __init__(self, url: str, group: str) -> None:
        self._redis = redis.Redis.from_url(url, decode_responses=True)
        self._group = group
        self._renew = self._redis.register_script(_RENEW)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._release = self._redis.register_script(_RELEASE)

    def register(self, replica: str, ttl: float) -> None:
        pipe = self._redis.pipeline()
        pipe.set(keys.replica_key(self._group, replica), "1", px=_ms(ttl))
        pipe.sadd(keys.replica_names(self._group), replica)
        pipe.execute()

    def replicas(self) -> list[str]:
        members: Any = self._redis.smembers(keys.replica_names(self._group))
        names = sorted(str(name) for name in members)
        if not names:
            return []
        alive: Any = self._redis.mget([keys.replica_key(self._group, name) for name in names])
        gone = [name for name, value in zip(names, alive, strict=True) if value is None]
        if gone:  # registrations that lapsed: their replicas died without leaving
            self._redis.srem(keys.replica_names(self._group), *gone)
        return [name for name, value in zip(names, alive, strict=True) if value is not None]

    def deregister(self, replica: str) -> None:
        pipe = self._redis.pipeline()
        pipe.delete(keys.replica_key(self._group, replica))
        pipe.srem(keys.replica_names(self._group), replica)
        pipe.execute()

    def acquire(self, unit: str, replica: str, ttl: float) -> bool:
        return bool(self._acquire(keys=[keys.lease_key(self._group, unit)], args=[replica, _ms(ttl)]))

    def renew(self, units: list[str], replica: str, ttl: float) -> set[str]:
        if not units:
            return set()
        held: Any = self._renew(keys=[keys.lease_key(self._group, unit) for unit in units], args=[replica, _ms(ttl)])
        return {units[int(index) - 1] for index in held}

    def release(self, units: list[str], replica: str) -> None:
        if units:
            self._release(keys=[keys.lease_key(self._group, unit) for unit in units], args=[replica])

    def close(self) -> None:
        self._redis.close()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
