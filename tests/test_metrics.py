"""Metrics that the services keep in their own way must read exactly as prometheus_client's do."""

from __future__ import annotations

import random
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from tars.metrics.catalogue import REWARD_BUCKETS
from tars.metrics.counting import count_evaluations
from tars.version import VERSION


class Counted(NamedTuple):
    agent_id: str
    environment: str
    region: str
    status: str
    reward: float
    duration_ms: float | None


def _samples(text: str, name: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line.startswith(name) and "_created" not in line:
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def test_rewards_observed_a_batch_at_a_time_read_as_a_prometheus_histogram() -> None:
    rng = random.Random(3)
    # Integers and halves sum exactly in any order; bounds themselves are included ("le").
    rewards = [rng.choice([-2000, -1000, -500, -0.5, 0, 10, 10.5, 499, 500, 501]) for _ in range(700)]
    agent = "metrics-test-agent"  # labels no other test uses: the registry is the process's
    count_evaluations(Counted(agent, "CartPole-v1", "eu-west-1", "completed", reward, None) for reward in rewards[:300])
    count_evaluations(Counted(agent, "CartPole-v1", "us-east-1", "failed", reward, 5.0) for reward in rewards[300:])

    reference = CollectorRegistry()
    histogram = Histogram(
        "tars_evaluation_reward",
        "Reward of stored evaluations",
        ["agent_id", "environment", "version"],
        buckets=REWARD_BUCKETS,
        registry=reference,
    )
    for reward in rewards:
        histogram.labels(agent, "CartPole-v1", VERSION).observe(reward)

    ours = {
        key: value
        for key, value in _samples(generate_latest().decode(), "tars_evaluation_reward").items()
        if agent in key
    }
    expected = _samples(generate_latest(reference).decode(), "tars_evaluation_reward")
    assert ours == expected
    assert (
        ours[f'tars_evaluation_reward_count{{agent_id="{agent}",environment="CartPole-v1",version="{VERSION}"}}'] == 700
    )
