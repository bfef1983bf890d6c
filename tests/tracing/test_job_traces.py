"""A job's consumer continues its producer's trace, through the in-process queue and Redis Streams
alike: redelivered, handed back, or claimed from a worker that went silent."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tars.bus.base import JobQueue
from tars.bus.memory import InProcessJobQueue
from tars.bus.redis_streams import RedisJobQueue
from tars.domain.runs import TrainingJob
from tars.metrics.catalogue import TRACE_MESSAGES
from tars.tracing.propagation import REGION_KEY, consuming, producing

JOBS = 1000


def job(n: int) -> TrainingJob:
    return TrainingJob(f"run-{n}", "dqn", ("dqn", "ppo")[n % 2], "CartPole-v1", 3, 2, n)


@pytest.fixture(params=["in-process", "redis"])
def queue(request: pytest.FixtureRequest) -> JobQueue:
    if request.param == "in-process":
        return InProcessJobQueue()
    return RedisJobQueue(request.getfixturevalue("redis_url"), claim_idle_seconds=0.2)


def continued(transport: str) -> float:
    return TRACE_MESSAGES.labels(transport, "true")._value.get()


def test_every_consumer_span_of_a_thousand_jobs_is_in_its_producers_trace(
    queue: JobQueue, spans: InMemorySpanExporter
) -> None:
    """A quarter of the deliveries go to workers that die holding them (never acknowledged); the jobs
    come back (claimed after their idle time on Redis, handed back on the in-process queue)."""
    rng = random.Random(11)
    before = continued(queue.transport)
    for n in range(JOBS):
        with producing("job.enqueue", {"tars.run_id": f"run-{n}"}) as carrier:
            queue.enqueue(job(n), carrier)
    done: set[str] = set()
    deliveries = Counter[str]()
    while len(done) < JOBS:
        delivery = queue.receive(f"worker-{rng.randrange(4)}", timeout=1)
        if delivery is None:
            continue  # what dead workers held comes back once idle long enough (receive waits for it)
        run_id = delivery.job.run_id
        deliveries[run_id] += 1
        with consuming("job.process", delivery.trace, transport=queue.transport, attributes={"tars.run_id": run_id}):
            if run_id not in done and rng.random() < 0.25 and deliveries[run_id] == 1:
                if isinstance(queue, InProcessJobQueue):
                    queue.release(delivery)  # its worker is gone: the job goes back as it came
                continue  # on Redis: held, never acknowledged, claimed by another after 0.2 s idle
        queue.ack(delivery)
        done.add(run_id)

    finished = spans.get_finished_spans()
    producers = {_run(span): span for span in finished if span.kind is SpanKind.PRODUCER}
    consumers = [span for span in finished if span.kind is SpanKind.CONSUMER]
    assert len(producers) == JOBS and len(consumers) == sum(deliveries.values()) > JOBS
    orphans = [
        _run(span)
        for span in consumers
        if span.parent is None
        or span.context.trace_id != producers[_run(span)].context.trace_id
        or span.parent.span_id != producers[_run(span)].context.span_id
    ]
    assert orphans == []
    assert sum(1 for count in deliveries.values() if count > 1) > JOBS // 10  # redeliveries happened
    assert continued(queue.transport) - before == len(consumers)


def test_a_message_without_context_is_counted_as_broken_and_starts_its_own_trace(
    queue: JobQueue, spans: InMemorySpanExporter
) -> None:
    before = TRACE_MESSAGES.labels(queue.transport, "false")._value.get()
    queue.enqueue(job(1))  # a producer of a release that sent no context
    delivery = queue.receive("w", timeout=1)
    assert delivery is not None and delivery.trace == {}
    with consuming("job.process", delivery.trace, transport=queue.transport):
        pass
    queue.ack(delivery)
    [span] = spans.get_finished_spans()
    assert span.parent is None
    assert TRACE_MESSAGES.labels(queue.transport, "false")._value.get() == before + 1


def test_a_message_that_crossed_regions_records_both(queue: JobQueue, spans: InMemorySpanExporter) -> None:
    with producing("job.enqueue") as carrier:
        queue.enqueue(job(2), {**carrier, REGION_KEY: "ap-southeast-1"})  # sent from another region
    delivery = queue.receive("w", timeout=1)
    assert delivery is not None
    with consuming("job.process", delivery.trace, transport=queue.transport):
        pass
    queue.ack(delivery)
    consumer = next(span for span in spans.get_finished_spans() if span.kind is SpanKind.CONSUMER)
    assert consumer.attributes is not None
    assert (consumer.attributes["tars.producer_region"], consumer.attributes["tars.region"]) == (
        "ap-southeast-1",
        "eu-west-1",
    )


def _run(span: ReadableSpan) -> str:
    assert span.attributes is not None
    return str(span.attributes["tars.run_id"])
