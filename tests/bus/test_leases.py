"""The lease table contract — registrations that lapse, leases held by one replica at a time, renewed and
released only by their holder — on both implementations."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tars.bus.base import LeaseTable
from tars.bus.memory_leases import InProcessLeases
from tars.bus.redis_leases import RedisLeases
from tests.waiting import eventually

TTL = 0.3


@pytest.fixture(params=["in-process", "redis"])
def leases(request: pytest.FixtureRequest) -> Iterator[LeaseTable]:
    table: LeaseTable
    if request.param == "in-process":
        table = InProcessLeases()
    else:
        table = RedisLeases(request.getfixturevalue("redis_url"), "test-group")
    yield table
    table.close()


def test_replicas_are_alive_while_they_renew_their_registration(leases: LeaseTable) -> None:
    leases.register("a", 30)
    leases.register("b", TTL)
    assert leases.replicas() == ["a", "b"]
    eventually(lambda: leases.replicas() == ["a"], timeout=5, message="b's registration to lapse")
    leases.deregister("a")
    assert leases.replicas() == []


def test_a_lease_is_held_by_one_replica_until_released_or_lapsed(leases: LeaseTable) -> None:
    assert leases.acquire("agent-1", "a", 30)
    assert leases.acquire("agent-1", "a", 30)  # its holder extends it
    assert not leases.acquire("agent-1", "b", 30)
    assert leases.renew(["agent-1", "agent-2"], "a", 30) == {"agent-1"}
    assert leases.renew(["agent-1"], "b", 30) == set()
    leases.release(["agent-1"], "b")  # not b's to release
    assert not leases.acquire("agent-1", "b", 30)
    leases.release(["agent-1"], "a")
    assert leases.acquire("agent-1", "b", TTL)
    eventually(lambda: leases.acquire("agent-1", "a", 30), timeout=5, message="b's lease to lapse")
    assert leases.renew(["agent-1"], "b", 30) == set()  # b lost it: it can no longer extend it
