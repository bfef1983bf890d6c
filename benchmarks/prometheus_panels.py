"""Query time of every tars-overview panel, through the recording rules and through the raw queries
they replace, against a real Prometheus holding a day of generated T.A.R.S. series. Target: every
panel under 50 ms through the rules (meets_target: the slowest panel's median).

    generate: --hours (default 24) of every series the recording rules read (docs/metrics.md:
        names, types and labels as listed), scraped every 15 s from a distributed deployment:
        dashboard-api and orchestration with two replicas each (one on the stable release, one on
        a canary), five agents evaluated in four regions, five workers. Counters grow at daily
        traffic curves, histograms are cumulative and agree with their counters, a few incidents
        (a slow route, a failing canary, a region failing evaluations, a queue backlog, a leaking
        worker) and restarts happen. Seeded; written as OpenMetrics and loaded with
        `promtool tsdb create-blocks-from openmetrics`.
    backfill: the recording rules of deploy/prometheus/rules over the same span, with `promtool
        tsdb create-blocks-from rules` (--eval-interval 15 s; a group with its own interval keeps
        it) against a Prometheus on the raw blocks. Rules that read other rules are backfilled
        after them: one pass per dependency level, each on the blocks of the passes before. The
        last start waits for Prometheus to compact everything, as a day of running would have.
    measure: each panel of deploy/grafana/dashboards/tars-overview.json as Grafana asks for it
        over the whole span (time series and stats: query_range at --step, 60 s being Grafana's
        step for 24 h at ~1,500 px; table targets: an instant query at the end), a warm-up then
        --repeats runs; a panel's time is its targets' times added up (sent one after the other,
        request to last byte). Then the same with every tars:* name replaced by its rule's
        expression (recursively, the panel's label matchers pushed into the raw selectors): the
        query the rule saves. A raw panel slower than --slow-seconds on its warm-up is run once more
        only. Prints each panel's times, whether both forms return the same series, and the rules
        and panels that came back empty, NaN or infinite.

    make bench-install     # once: Debian's prometheus (prometheus and promtool)
    .venv/bin/python benchmarks/prometheus_panels.py [--hours 24] [--repeats 5] [--step 60]
    (--keep DIR keeps the data there, and a later run with the same --keep DIR and --hours measures
    it again without regenerating; without prometheus or promtool the result says so: available
    false, reason)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import psutil
import yaml
from _harness import emit, free_port, missing_command, unavailable

ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "tars-overview.json"
TARGET_MS = 50.0
SCRAPE_S = 15
STABLE, CANARY = "v1.0.1", "v1.1.0"

# Buckets as tars.metrics.catalogue defines them.
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
EVALUATION_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REWARD_BUCKETS = (-1000, -500, -200, -100, 0, 10, 50, 100, 200, 300, 400, 500)
REGIONS = {"us-west-2": 0.35, "us-east-1": 0.3, "eu-west-1": 0.2, "ap-southeast-1": 0.15}
REGION_SLOWDOWN = {"us-west-2": 1.0, "us-east-1": 1.1, "eu-west-1": 1.2, "ap-southeast-1": 1.6}
ALGORITHMS = ("a2c", "ddpg", "dqn", "ppo", "sac", "td3")


# --- the deployment ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agent:
    agent_id: str
    algorithm: str
    environment: str
    evaluations_per_s: float  # at the daily peak, all regions
    evaluation_median_s: float
    reward_p: tuple[float, ...]  # share of rewards per REWARD_BUCKETS bucket, +Inf last
    jobs_per_hour: float
    job_minutes: float
    steps_per_s: float
    episode_steps: int
    losses: dict[str, float]


# CartPole rewards reach 500 when learnt; Pendulum's are -1500 .. -100; MountainCarContinuous' ~90.
_CARTPOLE = (0, 0, 0, 0, 0, 0.02, 0.05, 0.06, 0.1, 0.12, 0.15, 0.5, 0)
_PENDULUM = (0.08, 0.17, 0.4, 0.3, 0.05, 0, 0, 0, 0, 0, 0, 0, 0)
_MOUNTAIN_CAR = (0, 0, 0, 0, 0.25, 0.02, 0.08, 0.65, 0, 0, 0, 0, 0)
_ACTOR_CRITIC = {"value_loss": 8.0, "policy_loss": 0.4, "entropy_loss": 0.6}
AGENTS = (
    Agent(
        "dqn", "dqn", "CartPole-v1", evaluations_per_s=1.2, evaluation_median_s=0.08, reward_p=_CARTPOLE,
        jobs_per_hour=3, job_minutes=25, steps_per_s=1800, episode_steps=180, losses={"loss": 0.02},
    ),
    Agent(
        "a2c", "a2c", "CartPole-v1", evaluations_per_s=0.8, evaluation_median_s=0.08, reward_p=_CARTPOLE,
        jobs_per_hour=3, job_minutes=10, steps_per_s=2500, episode_steps=200, losses=_ACTOR_CRITIC,
    ),
    Agent(
        "ppo", "ppo", "CartPole-v1", evaluations_per_s=2.0, evaluation_median_s=0.07, reward_p=_CARTPOLE,
        jobs_per_hour=6, job_minutes=15, steps_per_s=2200, episode_steps=220, losses={"loss": 4.0, **_ACTOR_CRITIC},
    ),
    Agent(
        "ddpg", "ddpg", "Pendulum-v1", evaluations_per_s=0.6, evaluation_median_s=0.35, reward_p=_PENDULUM,
        jobs_per_hour=2, job_minutes=30, steps_per_s=600, episode_steps=200,
        losses={"actor_loss": 60.0, "critic_loss": 2.0},
    ),
    Agent(
        "sac-mountaincar", "sac", "MountainCarContinuous-v0", evaluations_per_s=0.3, evaluation_median_s=1.8,
        reward_p=_MOUNTAIN_CAR, jobs_per_hour=2, job_minutes=40, steps_per_s=400, episode_steps=999,
        losses={"actor_loss": 5.0, "critic_loss": 0.3},
    ),
)  # fmt: skip


@dataclass
class Target:
    """One scraped process: its job and instance labels, and when it was up."""

    job: str
    instance: str
    version: str
    share: float  # of its service's traffic
    restart_at: float | None = None  # share of the span at which it restarts (down for two scrapes)
    alive: np.ndarray = field(init=False)
    life_begin: np.ndarray = field(init=False)  # index of the scrape its current process started at
    started: np.ndarray = field(init=False)  # process_start_time_seconds
    timestamps: list[str] = field(init=False)

    def bind(self, timeline: Timeline, rng: np.random.Generator) -> None:
        steps = timeline.steps
        self.alive = np.ones(steps, dtype=bool)
        self.life_begin = np.zeros(steps, dtype=np.int64)
        self.started = np.full(steps, round(timeline.start - rng.uniform(3600, 30 * 86400), 3))
        if self.restart_at is not None:
            down = int(self.restart_at * steps)
            self.alive[down : down + 2] = False
            self.life_begin[down + 2 :] = down + 2
            self.started[down + 2 :] = timeline.start + (down + 2) * SCRAPE_S - 5
        # Prometheus scrapes each target at its own fixed offset within the interval.
        offset_ms = int(rng.integers(0, SCRAPE_S * 1000))
        base = timeline.start * 1000 + offset_ms
        self.timestamps = [f"{(base + i * SCRAPE_S * 1000) / 1000:.3f}" for i in range(steps)]


@dataclass(frozen=True)
class Timeline:
    start: int  # unix seconds, on an hour
    steps: int

    @property
    def end(self) -> int:
        return self.start + self.steps * SCRAPE_S

    def window(self, begin: float, end: float) -> np.ndarray:
        """Scrapes within a share of the span: incidents are placed so, whatever --hours is."""
        mask = np.zeros(self.steps, dtype=bool)
        mask[int(begin * self.steps) : max(int(end * self.steps), int(begin * self.steps) + 1)] = True
        return mask

    def daily_curve(self, rng: np.random.Generator) -> np.ndarray:
        """Traffic relative to the daily peak (16:00 UTC), a trough of 0.15 at 04:00, and some drift."""
        hours = ((self.start + np.arange(self.steps) * SCRAPE_S) % 86400) / 3600
        curve = 0.575 + 0.425 * np.cos((hours - 16) / 24 * 2 * np.pi)
        drift = np.convolve(rng.normal(0, 0.08, self.steps), np.ones(40) / 40 * 6, mode="same")
        return np.clip(curve * (1 + drift), 0.05, None)


def deployment() -> dict[str, list[Target]]:
    return {
        "dashboard-api": [
            Target("tars-dashboard-api", "api-1:3001", STABLE, 0.75, restart_at=0.55),
            Target("tars-dashboard-api", "api-2:3001", CANARY, 0.25),
        ],
        "orchestration": [
            Target("tars-orchestration", "orchestration-1:8094", STABLE, 0.75),
            Target("tars-orchestration", "orchestration-2:8094", CANARY, 0.25),
        ],
    }


@dataclass
class Worker:
    name: str
    algorithms: tuple[str, ...]
    slots: int
    target: Target

    @property
    def label(self) -> str:
        return ",".join(sorted(self.algorithms))


def workers() -> list[Worker]:
    def worker(n: int, algorithms: tuple[str, ...], restart_at: float | None = None) -> Worker:
        return Worker(f"worker-{n}", algorithms, 2, Target("tars-worker", f"worker-{n}:9108", STABLE, 1, restart_at))

    return [
        worker(1, ("ppo",)),
        worker(2, ("ppo",)),
        worker(3, ("a2c", "dqn"), restart_at=0.3),
        worker(4, ("ddpg", "sac", "td3"), restart_at=0.7),  # restarted after its leak
        worker(5, ALGORITHMS),
    ]


# Routes per service: (method, route, requests/s at the peak over all replicas, median latency s, codes).
_READ = {"200": 0.975, "401": 0.008, "404": 0.01, "429": 0.005, "500": 0.0015, "503": 0.0005}
_LIST = {"200": 0.985, "401": 0.008, "429": 0.005, "500": 0.0015, "503": 0.0005}
_WRITE = {"201": 0.955, "401": 0.008, "409": 0.005, "422": 0.02, "429": 0.01, "500": 0.0015, "503": 0.0005}
_ACTION = {"200": 0.975, "401": 0.005, "404": 0.01, "409": 0.006, "422": 0.002, "500": 0.002}
_LOGIN = {"200": 0.9, "401": 0.08, "422": 0.005, "429": 0.015}
_PROBE = {"200": 1.0}
_UNMATCHED = {"404": 1.0}
_ADMIN = [
    ("GET", "/api/v1/users", 0.02, 0.008, _LIST),
    ("POST", "/api/v1/users", 0.001, 0.25, _WRITE),
    ("PATCH", "/api/v1/users/{username}", 0.001, 0.01, _ACTION),
    ("GET", "/api/v1/apikeys", 0.01, 0.008, _LIST),
    ("POST", "/api/v1/apikeys", 0.002, 0.01, _WRITE),
    ("DELETE", "/api/v1/apikeys/{prefix}", 0.001, 0.01, _ACTION),
    ("GET", "/api/v1/audit", 0.01, 0.02, _LIST),
    ("POST", "/api/v1/auth/login", 0.05, 0.12, _LOGIN),
    ("POST", "/api/v1/auth/refresh", 0.3, 0.006, _ACTION),
    ("POST", "/api/v1/auth/logout", 0.02, 0.006, _ACTION),
    ("GET", "/health", None, 0.0008, _PROBE),  # the load balancer's probe, every 5 s per replica
    ("GET", "/metrics", None, 0.004, _PROBE),  # Prometheus, every 15 s per replica
    ("GET", "unmatched", 0.05, 0.0005, _UNMATCHED),
]
ROUTES: dict[str, list[tuple[str, str, float | None, float, dict[str, float]]]] = {
    "dashboard-api": [
        ("GET", "/api/v1/evaluations", 12.0, 0.012, _LIST),
        ("POST", "/api/v1/evaluations", 6.0, 0.009, _WRITE),
        ("POST", "/api/v1/evaluations/batch", 1.5, 0.06, _WRITE),
        ("GET", "/api/v1/evaluations/summary", 4.0, 0.025, _LIST),
        ("GET", "/api/v1/evaluations/series", 3.0, 0.03, _LIST),
        ("DELETE", "/api/v1/evaluations/{evaluation_id}", 0.01, 0.01, _ACTION),
        ("GET", "/api/v1/agents", 5.0, 0.004, _LIST),
        ("POST", "/api/v1/agents", 0.005, 0.012, _WRITE),
        ("GET", "/api/v1/agents/{agent_id}", 3.0, 0.004, _READ),
        ("PATCH", "/api/v1/agents/{agent_id}", 0.005, 0.01, _ACTION),
        ("DELETE", "/api/v1/agents/{agent_id}", 0.001, 0.01, _ACTION),
        ("GET", "/api/v1/environments", 1.0, 0.002, _LIST),
        ("GET", "/api/v1/runs", 6.0, 0.015, _LIST),
        ("GET", "/api/v1/runs/{run_id}", 4.0, 0.006, _READ),
        ("POST", "/api/v1/runs/{run_id}/cancel", 0.005, 0.015, _ACTION),
        ("GET", "/api/v1/runs/{run_id}/attempts", 0.5, 0.008, _READ),
        ("POST", "/api/v1/train", 0.01, 0.02, _WRITE),
        ("POST", "/api/v1/evaluate", 0.01, 0.02, _WRITE),
        ("GET", "/", 0.3, 0.002, _PROBE),
        *_ADMIN,
    ],
    "orchestration": [
        ("POST", "/api/v1/train", 0.03, 0.02, _WRITE),
        ("POST", "/api/v1/evaluate", 0.02, 0.02, _WRITE),
        ("GET", "/api/v1/runs", 1.0, 0.015, _LIST),
        ("GET", "/api/v1/runs/{run_id}", 1.5, 0.006, _READ),
        ("POST", "/api/v1/runs/{run_id}/cancel", 0.002, 0.015, _ACTION),
        ("GET", "/api/v1/runs/{run_id}/attempts", 0.2, 0.008, _READ),
        ("GET", "/api/v1/agents", 0.5, 0.004, _LIST),
        ("GET", "/api/v1/agents/{agent_id}", 0.5, 0.004, _READ),
        ("POST", "/api/v1/agents", 0.002, 0.012, _WRITE),
        ("PATCH", "/api/v1/agents/{agent_id}", 0.002, 0.01, _ACTION),
        ("GET", "/api/v1/environments", 0.2, 0.002, _LIST),
        ("POST", "/api/v1/runs/{run_id}/attempts", 0.01, 0.015, _WRITE),
        ("POST", "/api/v1/runs/{run_id}/attempts/{number}/progress", 4.0, 0.008, _ACTION),
        ("POST", "/api/v1/runs/{run_id}/attempts/{number}/heartbeat", 1.0, 0.004, _ACTION),
        ("POST", "/api/v1/runs/{run_id}/attempts/{number}/finish", 0.01, 0.03, _ACTION),
        ("GET", "/api/v1/runs/{run_id}/attempts/{number}/cancel", 1.0, 0.003, _READ),
        *_ADMIN,
    ],
}


# --- writing OpenMetrics ------------------------------------------------------------------------------


class OpenMetricsWriter:
    """Streams series to an OpenMetrics file; every family's series are written together, as the
    format (and promtool) wants, one series' samples after another."""

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self.series = 0
        self.samples = 0

    def family(self, name: str, kind: str) -> None:
        self._file.write(f"# TYPE {name} {kind}\n")

    def write(
        self, name: str, target: Target, labels: dict[str, str], values: np.ndarray, present: np.ndarray | None = None
    ) -> None:
        present = target.alive if present is None else present & target.alive
        chosen = np.flatnonzero(present)
        if not chosen.size:
            return
        names = ",".join(f'{key}="{value}"' for key, value in labels.items())
        prefix = f'{name}{{job="{target.job}",instance="{target.instance}"{"," if names else ""}{names}}} '
        picked = values[chosen]
        if np.issubdtype(picked.dtype, np.integer):
            text = map(str, picked.tolist())
        else:
            text = map(repr, np.round(picked, 6).tolist())
        stamps = target.timestamps if chosen.size == len(target.timestamps) else [target.timestamps[i] for i in chosen]
        # One join per series: ~0.2 µs a sample, where a write per sample is several times that.
        self._file.write(prefix + ("\n" + prefix).join(map(" ".join, zip(text, stamps, strict=True))) + "\n")
        self.series += 1
        self.samples += int(chosen.size)

    def close(self) -> None:
        self._file.write("# EOF\n")


def counter(increments: np.ndarray, target: Target) -> np.ndarray:
    """A counter's values from its increments per scrape: nothing while down, from 0 after a restart."""
    increments = increments * (target.alive if increments.ndim == 1 else target.alive[:, None])
    total = np.cumsum(increments, axis=0)
    before = np.where(target.life_begin > 0, target.life_begin - 1, 0)
    base = np.where((target.life_begin > 0).reshape(-1, *[1] * (increments.ndim - 1)), total[before], 0)
    return total - base


def used(values: np.ndarray) -> np.ndarray:
    """A labelled child exists from its first use on (prometheus_client creates it then)."""
    return values > 0


def hold(update: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A gauge set at some scrapes keeps its last value in between."""
    latest = np.maximum.accumulate(np.where(update, np.arange(len(update)), 0))
    return values[latest]


def lognormal_shares(bounds: tuple[float, ...], median: float, sigma: float = 0.8) -> np.ndarray:
    """Share of observations per bucket (the last one above every bound) of a log-normal latency."""
    cdf = [0.5 * math.erfc(-(math.log(bound / median)) / (sigma * math.sqrt(2))) for bound in bounds]
    return np.diff([0.0, *cdf, 1.0])


def bucket_middles(bounds: tuple[float, ...]) -> np.ndarray:
    lower = (bounds[0] / 2, *bounds[:-1])
    return np.array([(low + high) / 2 for low, high in zip(lower, bounds, strict=True)] + [bounds[-1] * 1.5])


def observe(
    rng: np.random.Generator, counts: np.ndarray, shares: np.ndarray, overrides: list[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Spread each scrape's observations over buckets (columns); overrides: (scrapes, shares) for incidents."""
    spread = rng.multinomial(counts, shares)
    for when, other in overrides:
        spread[when] = rng.multinomial(counts[when], other)
    return spread


def write_histogram(
    out: OpenMetricsWriter,
    name: str,
    target: Target,
    labels: dict[str, str],
    bounds: tuple[float, ...],
    spread: np.ndarray,
    with_sum: bool = True,
) -> None:
    """Cumulative buckets, _count and (for non-negative bounds, as BatchHistogram does) _sum."""
    buckets = counter(np.cumsum(spread, axis=1), target)
    count = buckets[:, -1]
    present = used(count)
    for column, bound in enumerate((*(repr(float(bound)) for bound in bounds), "+Inf")):
        out.write(f"{name}_bucket", target, {**labels, "le": bound}, buckets[:, column], present)
    out.write(f"{name}_count", target, labels, count, present)
    if with_sum:
        out.write(f"{name}_sum", target, labels, counter(spread @ bucket_middles(bounds), target), present)


# --- the day ----------------------------------------------------------------------------------------------


@dataclass
class TrainingDay:
    """What the job queue and the workers did, scrape by scrape (a small discrete-event simulation)."""

    depth: dict[str, np.ndarray]
    pending: dict[str, np.ndarray]
    oldest_age: dict[str, np.ndarray]
    busy: dict[str, np.ndarray]
    jobs_done: dict[str, np.ndarray]
    running: dict[str, np.ndarray]  # jobs of each agent running
    runs: dict[tuple[str, str], np.ndarray]  # runs finished per (agent, status) per scrape
    speed: dict[str, np.ndarray]  # steps/s of the agent's latest report


def simulate_training(timeline: Timeline, fleet: list[Worker], rng: np.random.Generator) -> TrainingDay:
    steps = timeline.steps
    backlog = timeline.window(0.3, 0.35)  # a burst of PPO jobs: the queue grows, then drains
    waiting: dict[str, deque[tuple[int, Agent]]] = {algorithm: deque() for algorithm in ALGORITHMS}
    jobs: dict[str, list[list[Any]]] = {w.name: [] for w in fleet}  # [agent, scrapes left]
    done = dict.fromkeys((w.name for w in fleet), 0)
    day = TrainingDay(
        depth={a: np.zeros(steps, np.int64) for a in ALGORITHMS},
        pending={a: np.zeros(steps, np.int64) for a in ALGORITHMS},
        oldest_age={a: np.zeros(steps) for a in ALGORITHMS},
        busy={w.name: np.zeros(steps, np.int64) for w in fleet},
        jobs_done={w.name: np.zeros(steps, np.int64) for w in fleet},
        running={a.agent_id: np.zeros(steps, np.int64) for a in AGENTS},
        runs={(a.agent_id, s): np.zeros(steps, np.int64) for a in AGENTS for s in ("succeeded", "failed", "cancelled")},
        speed={a.agent_id: np.zeros(steps) for a in AGENTS},
    )
    for i in range(steps):
        for agent in AGENTS:
            burst = 5 if agent.algorithm == "ppo" and backlog[i] else 1
            for _ in range(rng.poisson(agent.jobs_per_hour * burst * SCRAPE_S / 3600)):
                waiting[agent.algorithm].append((i, agent))
        for w in fleet:
            if not w.target.alive[i]:  # a restart: its jobs fail, its count starts again
                for agent, _ in jobs[w.name]:
                    day.runs[(agent.agent_id, "failed")][i] += 1
                jobs[w.name], done[w.name] = [], 0
                continue
            for job in list(jobs[w.name]):
                job[1] -= 1
                if job[1] <= 0:
                    jobs[w.name].remove(job)
                    done[w.name] += 1
                    status = rng.choice(("succeeded", "failed", "cancelled"), p=(0.88, 0.08, 0.04))
                    day.runs[(job[0].agent_id, str(status))][i] += 1
        for w in rng.permutation(len(fleet)):
            worker = fleet[w]
            while worker.target.alive[i] and len(jobs[worker.name]) < worker.slots:
                queues = [waiting[a] for a in worker.algorithms if waiting[a]]
                if not queues:
                    break
                _, agent = min(queues, key=lambda q: q[0][0]).popleft()
                minutes = rng.exponential(agent.job_minutes)
                jobs[worker.name].append([agent, max(1, int(minutes * 60 / SCRAPE_S))])
                day.speed[agent.agent_id][i] = agent.steps_per_s * rng.uniform(0.7, 1.2)
        for algorithm, queue in waiting.items():
            day.depth[algorithm][i] = len(queue)
            day.oldest_age[algorithm][i] = (i - queue[0][0]) * SCRAPE_S + rng.uniform(0, SCRAPE_S) if queue else 0
        for worker in fleet:
            day.busy[worker.name][i] = len(jobs[worker.name])
            day.jobs_done[worker.name][i] = done[worker.name]
            for agent, _ in jobs[worker.name]:
                day.pending[agent.algorithm][i] += 1
                day.running[agent.agent_id][i] += 1
    for agent in AGENTS:  # the latest report's speed holds until the next job starts
        speed = day.speed[agent.agent_id]
        day.speed[agent.agent_id] = hold(speed > 0, speed)
    return day


def generate(path: Path, timeline: Timeline, seed: int) -> dict[str, int]:
    """Writes the day as OpenMetrics; returns how many series and samples it holds."""
    rng = np.random.default_rng(seed)
    services = deployment()
    fleet = workers()
    apis = [target for replicas in services.values() for target in replicas]
    for target in (*apis, *(w.target for w in fleet)):
        target.bind(timeline, rng)
    curve = timeline.daily_curve(rng)
    day = simulate_training(timeline, fleet, rng)
    with path.open("w", buffering=16 * 2**20) as file:
        out = OpenMetricsWriter(file)
        out.family("process_start_time_seconds", "gauge")
        for target in (*apis, *(w.target for w in fleet)):
            out.write("process_start_time_seconds", target, {}, target.started)
        write_http(out, services, timeline, curve, rng)
        write_evaluations(out, services, timeline, curve, rng)
        write_training(out, services["orchestration"], day, rng)
        write_queue_and_workers(out, services["orchestration"], fleet, day, timeline, rng)
        write_websocket(out, services["dashboard-api"], timeline, curve, rng)
        write_database(out, apis, curve, rng)
        write_tracing(out, services, fleet, day, curve, rng)
        out.close()
    return {"series": out.series, "samples": out.samples, "bytes": path.stat().st_size}


def write_http(
    out: OpenMetricsWriter,
    services: dict[str, list[Target]],
    timeline: Timeline,
    curve: np.ndarray,
    rng: np.random.Generator,
) -> None:
    slow_summary = timeline.window(0.40, 0.43)  # /summary answers 6x slower for ~45 min
    failing_canary = timeline.window(0.62, 0.66)  # the canary's batch endpoint fails 5 % of requests
    traffic: list[tuple[Target, dict[str, str], list[str], np.ndarray, np.ndarray]] = []
    for service, replicas in services.items():
        for target in replicas:
            for method, route, peak, median, codes in ROUTES[service]:
                if peak is not None:
                    requests = rng.poisson(peak * target.share * curve * SCRAPE_S)
                else:  # a probe at a fixed pace, whatever the traffic
                    requests = np.full(timeline.steps, 1 if route == "/metrics" else SCRAPE_S // 5)
                names, shares = list(codes), np.array(list(codes.values()))
                incidents = []
                if route == "/api/v1/evaluations/batch" and target.version == CANARY:
                    failing = shares * 0.95
                    failing[names.index("500")] += 0.05
                    incidents.append((failing_canary, failing))
                by_code = observe(rng, requests, shares, incidents)
                slow = [(slow_summary, lognormal_shares(HTTP_BUCKETS, median * 6))] if route.endswith("summary") else []
                latency = observe(rng, requests, lognormal_shares(HTTP_BUCKETS, median), slow)
                labels = {"service": service, "method": method, "route": route}
                traffic.append((target, labels, names, by_code, latency))
    out.family("http_requests", "counter")
    for target, labels, names, by_code, _ in traffic:
        for column, code in enumerate(names):
            values = counter(by_code[:, column], target)
            out.write(
                "http_requests_total", target, {**labels, "code": code, "version": target.version}, values, used(values)
            )
    out.family("http_request_duration_seconds", "histogram")
    for target, labels, _, _, latency in traffic:
        write_histogram(
            out, "http_request_duration_seconds", target, {**labels, "version": target.version}, HTTP_BUCKETS, latency
        )


def write_evaluations(
    out: OpenMetricsWriter,
    services: dict[str, list[Target]],
    timeline: Timeline,
    curve: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Clients submit 70 % of evaluations to dashboard-api; workers report the rest to orchestration."""
    region_down = timeline.window(0.75, 0.78)  # eu-west-1 fails 8 % of evaluations for ~45 min
    stored = []
    for service, share in (("dashboard-api", 0.7), ("orchestration", 0.3)):
        for target in services[service]:
            for agent in AGENTS:
                for region, weight in REGIONS.items():
                    rate = agent.evaluations_per_s * weight * share * target.share * curve
                    evaluations = rng.poisson(rate * SCRAPE_S)
                    failing = np.where(region_down & (region == "eu-west-1"), 0.08, 0.004)
                    failed = rng.binomial(evaluations, failing * (1.5 if target.version == CANARY else 1))
                    stored.append((target, agent, region, evaluations, failed))
    out.family("tars_evaluations", "counter")
    for target, agent, region, evaluations, failed in stored:
        for status, count in (("completed", evaluations - failed), ("failed", failed)):
            labels = {"agent_id": agent.agent_id, "environment": agent.environment, "region": region}
            values = counter(count, target)
            out.write(
                "tars_evaluations_total",
                target,
                {**labels, "status": status, "version": target.version},
                values,
                used(values),
            )
    out.family("tars_evaluation_reward", "histogram")
    per_agent: dict[tuple[str, str], tuple[Target, Agent, np.ndarray]] = {}
    for target, agent, _, evaluations, _ in stored:
        key = (target.instance, agent.agent_id)
        per_agent[key] = (target, agent, per_agent.get(key, (target, agent, 0))[2] + evaluations)
    for target, agent, evaluations in per_agent.values():
        spread = observe(rng, evaluations, np.array(agent.reward_p) / sum(agent.reward_p), [])
        labels = {"agent_id": agent.agent_id, "environment": agent.environment, "version": target.version}
        write_histogram(out, "tars_evaluation_reward", target, labels, REWARD_BUCKETS, spread, with_sum=False)
    out.family("tars_evaluation_duration_seconds", "histogram")
    for target, agent, region, evaluations, _ in stored:
        shares = lognormal_shares(EVALUATION_DURATION_BUCKETS, agent.evaluation_median_s * REGION_SLOWDOWN[region])
        labels = {"agent_id": agent.agent_id, "environment": agent.environment, "region": region}
        spread = observe(rng, evaluations, shares, [])
        write_histogram(
            out,
            "tars_evaluation_duration_seconds",
            target,
            {**labels, "version": target.version},
            EVALUATION_DURATION_BUCKETS,
            spread,
        )


def write_training(out: OpenMetricsWriter, replicas: list[Target], day: TrainingDay, rng: np.random.Generator) -> None:
    """Workers report through either orchestration replica: each replica counts its share."""

    def split(counts: np.ndarray) -> dict[str, np.ndarray]:
        first = rng.binomial(counts, replicas[0].share)
        return {replicas[0].instance: first, replicas[1].instance: counts - first}

    progress: dict[tuple[str, str], np.ndarray] = {}
    for agent in AGENTS:
        trained = rng.poisson(day.running[agent.agent_id] * agent.steps_per_s * SCRAPE_S)
        for instance, share in split(trained).items():
            progress[(instance, agent.agent_id)] = share
    finished = {key: split(counts) for key, counts in day.runs.items()}
    out.family("tars_training_runs", "counter")
    for target in replicas:
        for (agent_id, status), per_replica in finished.items():
            values = counter(per_replica[target.instance], target)
            labels = {"agent_id": agent_id, "status": status, "version": target.version}
            out.write("tars_training_runs_total", target, labels, values, used(values))
    episodes = {
        key: rng.poisson(steps / next(a.episode_steps for a in AGENTS if a.agent_id == key[1]))
        for key, steps in progress.items()
    }
    for family, source in (("tars_training_episodes", episodes), ("tars_training_steps", progress)):
        out.family(family, "counter")
        for target in replicas:
            for agent in AGENTS:
                values = counter(source[(target.instance, agent.agent_id)], target)
                out.write(
                    f"{family}_total",
                    target,
                    {"agent_id": agent.agent_id, "version": target.version},
                    values,
                    used(values),
                )
    out.family("tars_training_episode_reward", "histogram")
    for target in replicas:
        for agent in AGENTS:
            shares = np.array(agent.reward_p) / sum(agent.reward_p)
            spread = observe(
                rng, episodes[(target.instance, agent.agent_id)], np.roll(shares, -1) * 0.3 + shares * 0.7, []
            )
            labels = {"agent_id": agent.agent_id, "version": target.version}
            write_histogram(out, "tars_training_episode_reward", target, labels, REWARD_BUCKETS, spread, with_sum=False)
    out.family("tars_training_loss", "gauge")
    for target in replicas:
        for agent in AGENTS:
            reported = progress[(target.instance, agent.agent_id)] > 0
            for kind, typical in agent.losses.items():
                loss = hold(reported, typical * rng.lognormal(0, 0.4, len(reported)))
                labels = {"agent_id": agent.agent_id, "kind": kind, "version": target.version}
                out.write("tars_training_loss", target, labels, loss, np.maximum.accumulate(reported))
    out.family("tars_training_steps_per_second", "gauge")
    for target in replicas:
        for agent in AGENTS:
            reported = np.maximum.accumulate(progress[(target.instance, agent.agent_id)] > 0)
            labels = {"agent_id": agent.agent_id, "version": target.version}
            out.write(
                "tars_training_steps_per_second", target, labels, np.round(day.speed[agent.agent_id], 1), reported
            )


def write_queue_and_workers(
    out: OpenMetricsWriter,
    replicas: list[Target],
    fleet: list[Worker],
    day: TrainingDay,
    timeline: Timeline,
    rng: np.random.Generator,
) -> None:
    # Every orchestration replica reads the same Redis stream, so exports the same numbers.
    for family, source in (
        ("tars_queue_depth", day.depth),
        ("tars_queue_pending", day.pending),
        ("tars_queue_oldest_age_seconds", day.oldest_age),
    ):
        out.family(family, "gauge")
        for target in replicas:
            for algorithm, values in source.items():
                out.write(
                    family,
                    target,
                    {"algorithm": algorithm},
                    np.round(values, 3) if values.dtype.kind == "f" else values,
                )
    leak = timeline.window(0.5, 0.7)
    stuck = timeline.window(0.85, 0.87)  # worker-5's heartbeat stops for ~30 min; its process still answers
    scrape_times = timeline.start + np.arange(timeline.steps) * SCRAPE_S
    out.family("tars_worker_rss_bytes", "gauge")
    for worker in fleet:
        busy = day.busy[worker.name]
        rss = 350e6 + busy * rng.normal(900e6, 60e6, len(busy)) + rng.normal(0, 15e6, len(busy))
        if worker.name == "worker-4":
            rss += np.cumsum(leak) * 2.5e9 / max(1, leak.sum()) * (np.arange(len(leak)) < np.flatnonzero(leak)[-1] + 1)
        out.write(
            "tars_worker_rss_bytes", worker.target, {"worker": worker.name, "algorithms": worker.label}, np.round(rss)
        )
    out.family("tars_worker_heartbeat_timestamp_seconds", "gauge")
    for worker in fleet:
        beats = scrape_times - rng.uniform(0, 10, len(scrape_times))  # a heartbeat every 10 s
        if worker.name == "worker-5":
            beats = hold(~stuck, beats)
        labels = {"worker": worker.name, "algorithms": worker.label}
        out.write("tars_worker_heartbeat_timestamp_seconds", worker.target, labels, np.round(beats, 3))
    for family, source in (("tars_worker_busy_slots", day.busy), ("tars_worker_jobs_done", day.jobs_done)):
        out.family(family, "gauge")
        for worker in fleet:
            out.write(family, worker.target, {"worker": worker.name, "algorithms": worker.label}, source[worker.name])


def write_websocket(
    out: OpenMetricsWriter, replicas: list[Target], timeline: Timeline, curve: np.ndarray, rng: np.random.Generator
) -> None:
    after_restart = np.zeros(timeline.steps, dtype=bool)  # clients catch up from the replay window
    for target in replicas:
        if target.restart_at is not None:
            after_restart |= timeline.window(target.restart_at, target.restart_at + 0.003)
    connections, counted = {}, {}
    for target in replicas:
        open_now = rng.poisson(120 * target.share * curve)
        opened = rng.poisson(open_now * 0.002 * SCRAPE_S + after_restart * open_now)
        sent = rng.poisson(open_now * 3 * SCRAPE_S)
        connections[target.instance] = open_now
        counted[target.instance] = {
            "tars_ws_connections_opened": opened,
            "tars_ws_resumed_subscriptions": rng.binomial(opened, 0.3),
            "tars_ws_events_sent": sent,
            "tars_ws_events_replayed": rng.binomial(sent, np.where(after_restart, 0.4, 0.005)),
            "tars_ws_resets": rng.poisson(0.0004 * SCRAPE_S * curve + after_restart * 2),
            "tars_ws_slow_consumers_dropped": rng.poisson(np.full(timeline.steps, 0.0001 * SCRAPE_S)),
        }
    out.family("tars_ws_connections", "gauge")
    for target in replicas:
        out.write("tars_ws_connections", target, {}, connections[target.instance])
    for name in counted[replicas[0].instance]:
        out.family(name, "counter")
        for target in replicas:
            # Unlabelled counters exist from the process' start, at 0.
            out.write(f"{name}_total", target, {}, counter(counted[target.instance][name], target))


def write_database(out: OpenMetricsWriter, apis: list[Target], curve: np.ndarray, rng: np.random.Generator) -> None:
    """PostgreSQL pools (10 + 10 overflow) and statements of the API processes; workers hold no client."""
    out.family("tars_db_pool_connections", "gauge")
    for target in apis:
        checked_out = np.minimum(rng.poisson(4 * target.share * curve), 20)
        out.write("tars_db_pool_connections", target, {"state": "checked_out"}, checked_out)
        out.write("tars_db_pool_connections", target, {"state": "idle"}, np.maximum(10 - checked_out, 0))
    out.family("tars_db_pool_capacity", "gauge")
    for target in apis:
        out.write("tars_db_pool_capacity", target, {}, np.full(len(curve), 20))
    out.family("tars_db_query_duration_seconds", "histogram")
    operations = {
        "select": (40, 0.002),
        "insert": (8, 0.003),
        "update": (5, 0.003),
        "delete": (0.05, 0.004),
        "copy": (0.5, 0.03),
        "other": (20, 0.0004),
    }
    for target in apis:
        for operation, (peak, median) in operations.items():
            statements = rng.poisson(peak * target.share * curve * SCRAPE_S)
            spread = observe(rng, statements, lognormal_shares(DB_BUCKETS, median, 1.0), [])
            write_histogram(out, "tars_db_query_duration_seconds", target, {"operation": operation}, DB_BUCKETS, spread)


def write_tracing(
    out: OpenMetricsWriter,
    services: dict[str, list[Target]],
    fleet: list[Worker],
    day: TrainingDay,
    curve: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """The transports the code counts (docs/metrics.md): events relayed by dashboard-api ("bus"),
    and jobs taken by workers ("redis_stream", below); T.A.R.S.' own messages carry their context."""
    consumed = [(target, "bus", 8, 0.995) for target in services["dashboard-api"]]
    out.family("tars_trace_messages", "counter")
    for target, transport, peak, share in consumed:
        messages = rng.poisson(peak * target.share * curve * SCRAPE_S)
        carried = rng.binomial(messages, share)
        for continued, count in (("true", carried), ("false", messages - carried)):
            values = counter(count, target)
            out.write(
                "tars_trace_messages_total",
                target,
                {"transport": transport, "continued": continued},
                values,
                used(values),
            )
    for worker in fleet:  # jobs arrive on the Redis stream, always with their context
        values = counter(rng.poisson(day.busy[worker.name] * 0.02 * SCRAPE_S), worker.target)
        out.write(
            "tars_trace_messages_total",
            worker.target,
            {"transport": "redis_stream", "continued": "true"},
            values,
            used(values),
        )


# --- PromQL: finding and rewriting vector selectors ----------------------------------------------------

_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_NUMBER = re.compile(r"[0-9.][0-9a-zA-Z_.]*(?:[eE][+-][0-9]+)?")  # numbers and durations (5m, 1e-3)
_LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_WORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
_AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
}


def _block_end(expr: str, start: int, close: str) -> int:
    """The index after the `close` that ends the block opened at `start`, skipping quoted strings."""
    i = start + 1
    while expr[i] != close:
        if expr[i] in "\"'`":
            quote = expr[i]
            i += 1
            while expr[i] != quote:
                i += 2 if expr[i] == "\\" else 1
        i += 1
    return i + 1


def _optional_block(expr: str, start: int, opening: str, close: str) -> tuple[str, int]:
    at = start
    while at < len(expr) and expr[at].isspace():
        at += 1
    if at < len(expr) and expr[at] == opening:
        end = _block_end(expr, at, close)
        return expr[at:end], end
    return "", start


def rewrite_selectors(expr: str, replace: Callable[[str, str, str], str]) -> str:
    """`expr` with each vector selector (name, {matchers}, [range]) replaced by replace(name, matchers, range).

    A small scanner, not a parser: strings, label lists (by, on, ...) and function names are copied
    as they are; any other identifier is a metric name. Enough for the rules and dashboards here.
    """
    out: list[str] = []
    i = 0
    while i < len(expr):
        char = expr[i]
        if char in "\"'`":
            end = _block_end(expr, i, char)
            out.append(expr[i:end])
            i = end
            continue
        if number := _NUMBER.match(expr, i) if char.isdigit() or char == "." else None:
            out.append(number.group())
            i = number.end()
            continue
        if char == "[":  # a subquery's range after a parenthesised expression
            end = _block_end(expr, i, "]")
            out.append(expr[i:end])
            i = end
            continue
        word = _IDENTIFIER.match(expr, i)
        if word is None and char != "{":
            out.append(char)
            i += 1
            continue
        name, after = (word.group(), word.end()) if word else ("", i)
        following, end = _optional_block(expr, after, "(", ")")
        if name in _LABEL_LISTS and following:
            out.append(expr[i:end])
            i = end
        elif following or name.lower() in _WORDS | _AGGREGATIONS:  # a function, an aggregation or an operator
            out.append(name)
            i = after
        else:
            matchers, after = _optional_block(expr, after, "{", "}")
            window, after = _optional_block(expr, after, "[", "]")
            out.append(replace(name, matchers, window))
            i = after
    return "".join(out)


def selector_names(expr: str) -> set[str]:
    names: set[str] = set()

    def note(name: str, matchers: str, window: str) -> str:
        names.add(name)
        return name + matchers + window

    rewrite_selectors(expr, note)
    return names


def add_matchers(expr: str, extra: str) -> str:
    """Every selector of `expr` with the label matchers `extra` ('code=~"5.."') added."""

    def narrowed(name: str, matchers: str, window: str) -> str:
        inside = matchers[1:-1].strip().rstrip(",")
        return f"{name}{{{inside + ',' if inside else ''}{extra}}}{window}"

    return rewrite_selectors(expr, narrowed) if extra.strip() else expr


# --- the recording rules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    record: str
    expr: str
    group: str
    interval: str | None
    labels: tuple[tuple[str, str], ...] = ()


def load_rules(folder: Path) -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for path in sorted(folder.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" not in rule:
                    continue  # alerts: promtool would skip them too
                if rule["record"] in rules:
                    raise SystemExit(f"{rule['record']} is recorded twice: its raw query would be ambiguous")
                labels = tuple(sorted((rule.get("labels") or {}).items()))
                rules[rule["record"]] = Rule(rule["record"], rule["expr"], group["name"], group.get("interval"), labels)
    return rules


def dependency_levels(rules: dict[str, Rule]) -> list[list[Rule]]:
    """Rules grouped so each reads only rules of earlier levels: 0 reads raw series only."""
    levels: dict[str, int] = {}

    def level(name: str, seen: tuple[str, ...] = ()) -> int:
        if name in seen:
            raise SystemExit(f"recording rules read each other in a cycle: {' -> '.join((*seen, name))}")
        if name not in levels:
            inputs = [dependency for dependency in selector_names(rules[name].expr) if dependency in rules]
            levels[name] = 1 + max((level(d, (*seen, name)) for d in inputs), default=-1)
        return levels[name]

    ordered: list[list[Rule]] = []
    for name in rules:
        at = level(name)
        ordered.extend([] for _ in range(at + 1 - len(ordered)))
        ordered[at].append(rules[name])
    return ordered


def write_rule_file(path: Path, rules: list[Rule]) -> None:
    """The rules of one level, in their groups (and so with their groups' intervals)."""
    groups: dict[str, dict[str, Any]] = {}
    for rule in rules:
        group = groups.setdefault(rule.group, {"name": rule.group, "rules": []})
        if rule.interval:
            group["interval"] = rule.interval
        group["rules"].append(
            {"record": rule.record, "expr": rule.expr, **({"labels": dict(rule.labels)} if rule.labels else {})}
        )
    path.write_text(yaml.safe_dump({"groups": list(groups.values())}, sort_keys=False))


def expand(expr: str, rules: dict[str, Rule], evaluation_interval: str) -> str:
    """`expr` with every recording rule's name replaced by the rule's expression, recursively: the
    query the rule saves. A panel's matchers on the rule move into the raw selectors (they filter on
    labels the rule keeps, so filtering before aggregating gives the same series); a range over a
    recorded series becomes the subquery it stands for."""

    def raw(name: str, matchers: str, window: str) -> str:
        rule = rules.get(name)
        if rule is None:
            return name + matchers + window
        if rule.labels:
            raise SystemExit(f"{name} adds labels: its raw query would need label_replace, not written here")
        inner = add_matchers(expand(rule.expr, rules, evaluation_interval), matchers[1:-1])
        subquery = f"{window[:-1]}:{rule.interval or evaluation_interval}]" if window else ""
        return f"({' '.join(inner.split())}){subquery}"

    return rewrite_selectors(expr, raw)


# --- Prometheus and promtool -------------------------------------------------------------------------------


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def prometheus(binary: str, data_dir: Path, work: Path, retention_days: int) -> Iterator[Prometheus]:
    """A Prometheus on `data_dir` that scrapes and evaluates nothing: it only answers queries."""
    config = work / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: {SCRAPE_S}s\n  evaluation_interval: {SCRAPE_S}s\n")
    port = free_port()
    log = (work / "prometheus.log").open("ab")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data_dir}",
            f"--storage.tsdb.retention.time={retention_days}d",
            f"--web.listen-address=127.0.0.1:{port}",
            "--query.timeout=10m",  # raw 1-day windows take minutes; we want their time, not a timeout
            "--log.level=warn",
        ],
        stdout=log,
        stderr=log,
    )
    server = Prometheus(f"http://127.0.0.1:{port}", process)
    try:
        _wait_ready(server)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_ready(server: Prometheus, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout  # opening a day of blocks takes a moment
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"Prometheus exited with {server.process.returncode}: see prometheus.log")
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"Prometheus was not ready within {timeout} s")


def _metric(server: Prometheus, name: str) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def wait_for_compaction(server: Prometheus, data_dir: Path) -> None:
    """Prometheus first looks for blocks to compact a minute after it starts, then compacts them all
    (overlapping ones first: the backfilled rules cover the raw blocks' span); measuring meanwhile
    would time the compaction. Done is: it has looked, no blocks overlap, and its CPU is idle."""
    while _metric(server, "prometheus_tsdb_compactions_triggered_total") < 1:
        time.sleep(2)
    process = psutil.Process(server.process.pid)
    quiet = 0
    while quiet < 3 or _overlapping(data_dir):
        before = sum(process.cpu_times()[:2])
        time.sleep(2)
        quiet = quiet + 1 if sum(process.cpu_times()[:2]) - before < 0.1 else 0


def _overlapping(data_dir: Path) -> bool:
    spans = sorted((meta["minTime"], meta["maxTime"]) for meta in _block_metas(data_dir))
    return any(later[0] < earlier[1] for earlier, later in pairwise(spans))


def _block_metas(data_dir: Path) -> list[dict[str, Any]]:
    metas = []
    for meta in data_dir.glob("*/meta.json"):
        try:
            metas.append(json.loads(meta.read_text()))
        except (OSError, ValueError):  # a block being written or deleted right now
            continue
    return metas


def promtool(binary: str, *arguments: str) -> None:
    completed = subprocess.run([binary, *arguments], capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(
            f"promtool {' '.join(arguments[:3])} failed:\n{(completed.stderr or completed.stdout)[-3000:]}"
        )


def move_blocks(source: Path, data_dir: Path) -> int:
    blocks = [block for block in source.iterdir() if (block / "meta.json").exists()]
    for block in blocks:
        block.rename(data_dir / block.name)
    return len(blocks)


def block_stats(data_dir: Path) -> dict[str, Any]:
    metas = _block_metas(data_dir)
    return {
        "blocks": len(metas),
        "block_hours": sorted(round((m["maxTime"] - m["minTime"]) / 3_600_000, 1) for m in metas),
        "samples": sum(m["stats"]["numSamples"] for m in metas),
        "bytes_on_disk": sum(path.stat().st_size for path in data_dir.rglob("*") if path.is_file()),
    }


# --- the dashboard's queries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    expr: str
    instant: bool


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str
    queries: tuple[Query, ...]


def dashboard_panels(path: Path) -> list[Panel]:
    def flatten(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from flatten(panel.get("panels", []))  # a collapsed row holds its panels

    found = []
    for panel in flatten(json.loads(path.read_text())["panels"]):
        queries = tuple(
            Query(target["expr"], bool(target.get("instant")) and not target.get("range"))
            for target in panel.get("targets", [])
            if target.get("expr") and not target.get("hide")
        )
        if queries:
            found.append(Panel(panel["title"], panel["type"], queries))
    return found


def grafana_variables(expr: str, step: int, span: int) -> str:
    """Grafana's built-in variables as it would fill them for this range and step."""
    values = {
        "__rate_interval": f"{max(step + SCRAPE_S, 4 * SCRAPE_S)}s",
        "__interval_ms": str(step * 1000),
        "__interval": f"{step}s",
        "__range_s": str(span),
        "__range_ms": str(span * 1000),
        "__range": f"{span}s",
    }
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    if "$" in expr:
        raise SystemExit(f"a dashboard variable this benchmark does not fill: {expr}")
    return expr


@dataclass
class Answer:
    seconds: float
    series: dict[tuple[tuple[str, str], ...], dict[float, float]]  # labels (without __name__): time: value
    samples: int  # samples Prometheus read (its query statistics)
    error: str | None = None


def ask(server: Prometheus, expr: str, instant: bool, start: int, end: int, step: int) -> Answer:
    """One query as Grafana sends it (POST, form encoded); timed from request to the last byte."""
    form = {"query": expr, "stats": "all"} | (
        {"time": str(end)} if instant else {"start": str(start), "end": str(end), "step": str(step)}
    )
    request = urllib.request.Request(
        f"{server.url}/api/v1/{'query' if instant else 'query_range'}", data=urllib.parse.urlencode(form).encode()
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=900) as response:
            body = response.read()
    except urllib.error.HTTPError as failed:
        return Answer(time.perf_counter() - started, {}, 0, json.loads(failed.read()).get("error", str(failed)))
    seconds = time.perf_counter() - started
    data = json.loads(body)["data"]
    series = {}
    for result in data["result"]:
        labels = tuple(sorted((k, v) for k, v in result["metric"].items() if k != "__name__"))
        points = result["values"] if "values" in result else [result["value"]]
        series[labels] = {float(at): float(value) for at, value in points}
    samples = data.get("stats", {}).get("samples", {}).get("totalQueryableSamples", 0)
    return Answer(seconds, series, samples)


@dataclass
class Timing:
    runs_ms: list[float]
    answers: list[Answer]

    @property
    def median_ms(self) -> float:
        return round(statistics.median(self.runs_ms), 2)

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.runs_ms)
        return round(ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)], 2)

    @property
    def error(self) -> str | None:
        return next((answer.error for answer in self.answers if answer.error), None)


def time_panel(
    server: Prometheus, queries: list[Query], start: int, end: int, step: int, repeats: int, slow_s: float
) -> Timing:
    """A warm-up, then `repeats` runs of the panel's queries one after the other (one more run only if
    the warm-up took longer than `slow_s`: a raw query that slow is not made faster by a warm cache)."""

    def run() -> tuple[float, list[Answer]]:
        answers = [ask(server, q.expr, q.instant, start, end, step) for q in queries]
        return sum(a.seconds for a in answers) * 1000, answers

    warm_up_ms, answers = run()
    runs = []
    for _ in range(1 if warm_up_ms > slow_s * 1000 or any(a.error for a in answers) else repeats):
        took, answers = run()
        runs.append(took)
    return Timing(runs, answers)


def compare(through_rules: list[Answer], raw: list[Answer]) -> dict[str, Any]:
    """Do both forms return the same series, with close values? Close, not equal: a rule is evaluated
    at its group's own offset within the interval, so the panel reads windows up to one interval older."""
    both = every = 0
    for rule_answer, raw_answer in zip(through_rules, raw, strict=True):
        both += len(set(rule_answer.series) & set(raw_answer.series))
        every += len(set(rule_answer.series) | set(raw_answer.series))
    differences = []
    for rule_answer, raw_answer in zip(through_rules, raw, strict=True):
        for labels, points in rule_answer.series.items():
            other = raw_answer.series.get(labels, {})
            for at, a in points.items():
                b = other.get(at)
                if b is not None and math.isfinite(a) and math.isfinite(b) and max(abs(a), abs(b)) > 0:
                    differences.append(abs(a - b) / max(abs(a), abs(b)))
    return {
        # 1: the same series (a topk may pick another series at a step where two are close)
        "series_overlap": round(both / every, 3) if every else None,
        "median_relative_difference": round(statistics.median(differences), 4) if differences else None,
    }


def _values(answer: Answer) -> list[float]:
    return [value for points in answer.series.values() for value in points.values()]


def describe(answers: list[Answer]) -> list[str]:
    """What a viewer would see wrong: a query without data, or NaN / infinite points."""
    notes = []
    for index, answer in enumerate(answers):
        values = _values(answer)
        if not values:
            notes.append(f"query {index + 1}: no data")
        if nan := sum(math.isnan(v) for v in values):
            notes.append(f"query {index + 1}: {nan} of {len(values)} points NaN")
        if inf := sum(math.isinf(v) for v in values):
            notes.append(f"query {index + 1}: {inf} of {len(values)} points infinite")
    return notes


def check_rules(server: Prometheus, rules: dict[str, Rule], start: int, end: int) -> list[dict[str, Any]]:
    """Every recording rule over the span (5-minute steps): the ones with no data, NaN or infinities,
    and at how many of the steps they had any series at all."""
    found = []
    start += 600  # past the first windows, which are not full yet
    steps = (end - start) // 300 + 1
    for name in rules:
        answer = ask(server, name, False, start, end, 300)
        values = _values(answer)
        covered = len({at for points in answer.series.values() for at in points})
        note: dict[str, Any] = {"rule": name, "series": len(answer.series), "steps_with_data": f"{covered}/{steps}"}
        if not values:
            found.append(note | {"problem": "no data"})
            continue
        nan, inf = sum(math.isnan(v) for v in values), sum(math.isinf(v) for v in values)
        if nan or inf or covered < steps * 0.9:
            found.append(note | {"points": len(values), "nan": nan, "infinite": inf})
    return found


# --- the run --------------------------------------------------------------------------------------------


def build_data(args: argparse.Namespace, work: Path, timeline: Timeline, rules: dict[str, Rule]) -> dict[str, Any]:
    """Raw blocks, then the rules backfilled level by level; returns what it made and how long it took."""
    data_dir = work / "data"
    shutil.rmtree(data_dir, ignore_errors=True)  # what an interrupted run left
    data_dir.mkdir()
    started = time.perf_counter()
    raw_file = work / "raw.om"
    written = generate(raw_file, timeline, args.seed)
    generated_s = time.perf_counter() - started
    started = time.perf_counter()
    # Blocks as a day of compaction would have left them (18 h, the largest range up to 24 h).
    promtool(
        args.promtool,
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        "--max-block-duration=24h",
        "-q",
        str(raw_file),
        str(data_dir),
    )
    raw_file.unlink()  # several GB
    loaded_s = time.perf_counter() - started
    passes = []
    for level, level_rules in enumerate(dependency_levels(rules)):
        started = time.perf_counter()
        rule_file, output = work / f"rules-level-{level}.yml", work / f"rules-level-{level}"
        write_rule_file(rule_file, level_rules)
        with prometheus(args.prometheus, data_dir, work, retention_days=math.ceil(args.hours / 24) + 30) as server:
            promtool(
                args.promtool,
                "tsdb",
                "create-blocks-from",
                "rules",
                f"--start={timeline.start}",
                f"--end={timeline.end}",
                f"--url={server.url}",
                f"--eval-interval={args.eval_interval}s",
                f"--output-dir={output}",
                "-q",
                str(rule_file),
            )
        blocks = move_blocks(output, data_dir)
        passes.append(
            {
                "level": level,
                "rules": len(level_rules),
                "blocks": blocks,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    return {
        "generated": written,
        "generate_seconds": round(generated_s, 1),
        "load_seconds": round(loaded_s, 1),
        "backfill": passes,
    }


def measure(args: argparse.Namespace, server: Prometheus, timeline: Timeline, rules: dict[str, Rule]) -> dict[str, Any]:
    # Grafana aligns a range query to its step; the last step is the span's end.
    end = timeline.end - timeline.end % args.step
    start = end - (timeline.end - timeline.start) + args.step
    span = end - start
    results = []
    for panel in dashboard_panels(args.dashboard):
        through = [Query(grafana_variables(q.expr, args.step, span), q.instant) for q in panel.queries]
        raw = [Query(expand(q.expr, rules, f"{args.eval_interval}s"), q.instant) for q in through]
        rules_timing = time_panel(server, through, start, end, args.step, args.repeats, args.slow_seconds)
        raw_timing = time_panel(server, raw, start, end, args.step, args.repeats, args.slow_seconds)
        result: dict[str, Any] = {
            "title": panel.title,
            "type": panel.kind,
            "queries": len(through),
            "series": sum(len(a.series) for a in rules_timing.answers),
            "rules_median_ms": rules_timing.median_ms,
            "rules_p95_ms": rules_timing.p95_ms,
            "raw_median_ms": raw_timing.median_ms,
            "raw_runs": len(raw_timing.runs_ms),
            "speedup": round(raw_timing.median_ms / rules_timing.median_ms, 1) if rules_timing.median_ms else None,
            "samples_read_rules": sum(a.samples for a in rules_timing.answers),
            "samples_read_raw": sum(a.samples for a in raw_timing.answers),
            **compare(rules_timing.answers, raw_timing.answers),
        }
        for label, timing in (("rules_error", rules_timing), ("raw_error", raw_timing)):
            if timing.error:
                result[label] = timing.error
        if notes := describe(rules_timing.answers):
            result["notes"] = notes
        results.append(result)
        print(f"{panel.title}: {result['rules_median_ms']} ms, raw {result['raw_median_ms']} ms", file=sys.stderr)
    return {"range": {"start": start, "end": end, "step_seconds": args.step}, "panels": results}


def summarise(panels: list[dict[str, Any]]) -> dict[str, Any]:
    times = [panel["rules_median_ms"] for panel in panels]
    raw = [panel["raw_median_ms"] for panel in panels]
    return {
        "panels": len(panels),
        "max_panel_ms": max(times),
        "max_panel_p95_ms": max(panel["rules_p95_ms"] for panel in panels),
        "median_panel_ms": round(statistics.median(times), 2),
        "panels_under_target": sum(t < TARGET_MS for t in times),
        "total_ms": round(sum(times), 1),
        "raw_max_panel_ms": max(raw),
        "raw_median_panel_ms": round(statistics.median(raw), 2),
        "raw_total_ms": round(sum(raw), 1),
        "slowest": [
            {"title": p["title"], "rules_median_ms": p["rules_median_ms"], "raw_median_ms": p["raw_median_ms"]}
            for p in sorted(panels, key=lambda p: -p["rules_median_ms"])[:5]
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=24.0, help="span of generated data (and of the queries)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--step", type=int, default=60, help="query_range step, seconds")
    parser.add_argument("--eval-interval", type=int, default=15, help="rule backfill interval, seconds")
    parser.add_argument("--slow-seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--rules", type=Path, default=RULES_DIR)
    parser.add_argument("--prometheus", default=shutil.which("prometheus") or "/usr/bin/prometheus")
    parser.add_argument("--promtool", default=shutil.which("promtool") or "/usr/bin/promtool")
    parser.add_argument("--keep", type=Path, help="work (and keep the data) in this directory")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the cleanup below runs
    reason = missing_command(args.prometheus, "prometheus") or missing_command(args.promtool, "prometheus")
    if reason is not None:
        emit(unavailable(reason, benchmark="prometheus_panels"))
        return

    rules = load_rules(args.rules)
    with _workspace(args.keep) as work:
        made = work / "made.json"
        if made.exists():  # --keep of an earlier run: measure the same data again
            built = json.loads(made.read_text())
            timeline = Timeline(built["start"], built["steps"])
            if built["hours"] != args.hours:
                raise SystemExit(f"{work} holds {built['hours']} h of data, not {args.hours}")
        else:
            end = int(time.time()) // 3600 * 3600
            steps = int(args.hours * 3600 / SCRAPE_S)
            timeline = Timeline(end - steps * SCRAPE_S, steps)
            built = build_data(args, work, timeline, rules) | {
                "start": timeline.start,
                "steps": steps,
                "hours": args.hours,
            }
            made.write_text(json.dumps(built))
        with prometheus(args.prometheus, work / "data", work, retention_days=math.ceil(args.hours / 24) + 30) as server:
            started = time.perf_counter()
            wait_for_compaction(server, work / "data")
            settle_s = time.perf_counter() - started
            stored = block_stats(work / "data")
            names = _series_names(server, timeline)
            measured = measure(args, server, timeline, rules)
            rule_problems = check_rules(server, rules, timeline.start, timeline.end)
    summary = summarise(measured["panels"])
    emit(
        {
            "benchmark": "prometheus_panels",
            "data": {
                "hours": args.hours,
                "scrape_interval_seconds": SCRAPE_S,
                "raw_series": built["generated"]["series"],
                "raw_samples": built["generated"]["samples"],
                "openmetrics_bytes": built["generated"]["bytes"],
                "rule_series": sum(count for name, count in names.items() if ":" in name),
                "recording_rules": len(rules),
                **stored,
                "rule_samples": stored["samples"] - built["generated"]["samples"],
            },
            "build": {
                "generate_seconds": built["generate_seconds"],
                "load_seconds": built["load_seconds"],
                "rule_eval_interval_seconds": args.eval_interval,
                "backfill": built["backfill"],
                "compaction_wait_seconds": round(settle_s, 1),
            },
            "query": measured["range"] | {"repeats": args.repeats},
            "panels": measured["panels"],
            "rules_with_problems": rule_problems,
            "summary": summary,
            "target_ms": TARGET_MS,
            "meets_target": summary["max_panel_ms"] < TARGET_MS,
        }
    )


def _series_names(server: Prometheus, timeline: Timeline) -> dict[str, int]:
    """Series per metric name over the span."""
    form = {"match[]": '{__name__=~".+"}', "start": str(timeline.start), "end": str(timeline.end)}
    request = urllib.request.Request(f"{server.url}/api/v1/series", data=urllib.parse.urlencode(form).encode())
    with urllib.request.urlopen(request, timeout=600) as response:
        series = json.loads(response.read())["data"]
    counts: dict[str, int] = {}
    for labels in series:
        counts[labels["__name__"]] = counts.get(labels["__name__"], 0) + 1
    return counts


@contextmanager
def _workspace(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="tars-prometheus-") as work:
        yield Path(work)


if __name__ == "__main__":
    main()
