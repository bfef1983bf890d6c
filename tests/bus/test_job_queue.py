"""The job queue contract, on the in-process queue and on Redis Streams alike."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import redis

from tars.bus.base import JobQueue
from tars.bus.memory import InProcessJobQueue
from tars.bus.redis_streams import RedisJobQueue
from tars.domain.agents import ALGORITHMS
from tars.domain.runs import TrainingJob
from tests.waiting import eventually


def job(run_id: str) -> TrainingJob:
    return TrainingJob(run_id, "dqn", "dqn", "CartPole-v1", 3, 2, 11, {"learning_rate": 0.001})


@pytest.fixture(params=["in-process", "redis"])
def queue(request: pytest.FixtureRequest) -> JobQueue:
    if request.param == "in-process":
        return InProcessJobQueue()
    return RedisJobQueue(request.getfixturevalue("redis_url"), claim_idle_seconds=0.5)


def test_jobs_arrive_in_order_and_intact(queue: JobQueue) -> None:
    queue.enqueue(job("a"))
    queue.enqueue(job("b"))
    first = queue.receive("w1", timeout=1)
    second = queue.receive("w1", timeout=1)
    assert first is not None and second is not None
    assert (first.job, second.job) == (job("a"), job("b"))
    assert not first.redelivered
    queue.ack(first)
    queue.ack(second)
    assert queue.receive("w1", timeout=0.2) is None


def test_a_released_job_goes_to_the_next_worker(queue: JobQueue) -> None:
    queue.enqueue(job("a"))
    delivery = queue.receive("w1", timeout=1)
    assert delivery is not None
    queue.release(delivery)
    again = queue.receive("w2", timeout=1)
    assert again is not None and again.job == job("a")
    queue.ack(again)


def test_stats_count_what_waits_what_is_being_worked_on_and_how_long_the_oldest_waited(queue: JobQueue) -> None:
    def dqn() -> tuple[int, int, float]:
        row = next(row for row in queue.stats() if row.algorithm == "dqn")
        return row.waiting, row.pending, row.oldest_waiting_seconds

    assert dqn() == (0, 0, 0.0)
    queue.enqueue(job("a"))
    queue.enqueue(job("b"))

    def waited_a_while() -> tuple[int, int, float] | None:
        stats = dqn()
        return stats if stats[2] >= 0.04 else None

    waiting, pending, oldest = eventually(waited_a_while)
    assert (waiting, pending) == (2, 0) and 0.04 <= oldest < 5
    taken = queue.receive("w1", timeout=1)
    assert taken is not None and dqn()[:2] == (1, 1)
    queue.ack(taken)
    assert dqn()[:2] == (1, 0)
    last = queue.receive("w1", timeout=1)
    assert last is not None
    queue.release(last)  # handed back: waiting again
    assert dqn()[:2] == (1, 0)
    again = queue.receive("w2", timeout=1)
    assert again is not None
    queue.ack(again)
    assert dqn() == (0, 0, 0.0)
    assert [row.algorithm for row in queue.stats()] == list(ALGORITHMS)


def test_redis_job_of_a_silent_worker_is_claimed_by_another(redis_url: str) -> None:
    queue = RedisJobQueue(redis_url, claim_idle_seconds=0.5)
    queue.enqueue(job("a"))
    taken = queue.receive("dies", timeout=1)
    assert taken is not None
    # "dies" never acknowledges nor keeps the job alive.
    assert queue.receive("survivor", timeout=0.1) is None
    claimed = eventually(lambda: queue.receive("survivor", timeout=0.1), 5, message="the job, once idle 0.5 s")
    assert claimed is not None and claimed.redelivered and claimed.job == job("a")
    queue.ack(claimed)
    assert queue.pending_count() == 0
    queue.close()


def test_redis_keep_alive_protects_a_working_job(redis_url: str) -> None:
    queue = RedisJobQueue(redis_url, claim_idle_seconds=0.5)
    queue.enqueue(job("a"))
    taken = queue.receive("busy", timeout=1)
    assert taken is not None
    for _ in range(4):
        time.sleep(0.3)
        queue.keep_alive(taken, "busy")
        assert queue.receive("other", timeout=0.05) is None
    queue.ack(taken)
    queue.close()


def test_jobs_enqueued_before_any_worker_are_delivered(redis_url: str) -> None:
    producer = RedisJobQueue(redis_url, claim_idle_seconds=30)
    producer.enqueue(job("early"))
    worker = RedisJobQueue(redis_url, claim_idle_seconds=30)
    delivery = worker.receive("w", timeout=1)
    assert delivery is not None and delivery.job.run_id == "early"
    worker.ack(delivery)
    producer.close()
    worker.close()


def test_redis_queue_recovers_when_redis_loses_its_data(redis_url: str) -> None:
    queue = RedisJobQueue(redis_url, claim_idle_seconds=30)
    assert queue.receive("w", timeout=0.05) is None
    redis.Redis.from_url(redis_url).flushdb()  # what a restart without persistence leaves
    queue.enqueue(job("after-restart"))
    with pytest.raises(redis.ResponseError, match="NOGROUP"):
        queue.receive("w", timeout=0.05)
    delivery = queue.receive("w", timeout=1)
    assert delivery is not None and delivery.job.run_id == "after-restart"
    queue.ack(delivery)
    queue.close()


def test_each_agent_family_has_its_own_stream(redis_url: str) -> None:
    producer = RedisJobQueue(redis_url, claim_idle_seconds=30)
    ppo_only = RedisJobQueue(redis_url, claim_idle_seconds=30, algorithms=["ppo"])
    producer.enqueue(replace(job("d"), algorithm="dqn"))
    producer.enqueue(replace(job("p"), algorithm="ppo"))
    taken = ppo_only.receive("ppo-agent-1", timeout=1)
    assert taken is not None and taken.job.run_id == "p"
    ppo_only.ack(taken)
    assert ppo_only.receive("ppo-agent-1", timeout=0.1) is None
    rest = producer.receive("any-agent", timeout=1)
    assert rest is not None and rest.job.run_id == "d"
    producer.ack(rest)
    assert set(redis.Redis.from_url(redis_url, decode_responses=True).keys("tars:jobs:*")) >= {
        "tars:jobs:ppo",
        "tars:jobs:dqn",
    }
