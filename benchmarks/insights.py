"""The reward-regression detector (tars.insight.detectors.regression) on generated evaluation streams
with a known answer, beside the static rule a Prometheus alert would use, and its throughput.

    streams: seeded, 1,000 evaluations each, half CartPole-like and half Pendulum-like (docs/insights.md,
        "The benchmark", says how each is drawn):
        CartPole: bimodal and capped, most episodes at or near 500, a few per cent failing early (8-150);
        Pendulum: negative and right-skewed in magnitude, mean between -150 and -1,300, a 2 % tail of
            episodes 1.5-3 x as costly.
        --streams clean streams (no change; a quarter of them improve by 10-30 % at a random time, which
        is not a regression), --streams streams with a drop of 20-50 % of the baseline mean at a random
        evaluation in 300..700, and --streams/4 with a drop of 3-7 % (below the detector's 10 % floor:
        how often it speaks about what it should let pass). A drop is made one of three ways per family
        (CartPole: more early failures, shorter successful episodes, or both; Pendulum: every episode
        costlier, some episodes failing to swing up, or both), each exactly the drawn share of the mean.
    ours: each stream fed in batches of --batch evaluations (10: one minute at the rate below), the
        detector's defaults; a detection is the first finding it opens after the drop began, its delay
        the evaluations since the drop when the batch that opened it was processed.
    peers: the same streams through a static alert rule as Prometheus evaluates it, evaluations arriving
        at 10 a minute and the rule evaluated every minute without `for`:
            avg_over_time(reward[5m])
              < avg_over_time(reward[30m] offset 5m) - 3 * stddev_over_time(reward[30m] offset 5m)
        i.e. the mean of the last 50 evaluations against the mean and standard deviation of the 300 before
        them (computed from every evaluation, the most favourable reading for the peer). Beside it, the
        same rule with the standard deviation of a 5-minute mean (sigma / sqrt(50)), the tighter rule one
        would write to catch more; and the rule with its multiplier tuned on these very clean streams to
        the false-positive target (its best case). Each peer's delays are also compared with ours on the
        drops both found (a rule that finds only the large drops looks fast on its own).
    information bound: Lorden's lower bound on the delay of any detector with false alarms as rare as
        the target asks, even one knowing both distributions: log(800,000) / KL per drop stream.
    oracle CUSUM: that detector itself, run: the exact log-likelihood-ratio CUSUM of each drop stream (it
        knows the distributions before and after), its threshold set on clean draws to 0.5 false positive
        per 1,000 streams, fed the same batches and scored the same way: the best delay there is.
    bank efficiency: the drift (mean log-likelihood ratio after the change) of the bank's best alternative
        for each drop, its baseline known exactly, as a share of the KL divergence (the oracle's drift).
    throughput: rewards per second on one core, fed in batches of 1, 10, 100 and 1,000 (a stream with
        drops and recoveries, so alarms and evidence are part of the cost), through the reward-regression
        detector alone and through every per-evaluation detector (regression and health per region,
        region divergence), against --ingest-rate (what batched ingest stores per second; the target is
        1.5 x that at --batch, every detector included).

Targets: recall >= 0.95 for drops >= 20 %, <= 1 false positive per 1,000 clean streams, median delay
<= 30 evaluations; throughput >= 1.5 x ingest.

    .venv/bin/python benchmarks/insights.py [--streams 1000] [--seed 0] [--batch 10] [--ingest-rate 90000]
        [--alternatives "a,b,threshold;..."] [--reference-margin 1.5]
    (the detector's bank and margin, to compare others with its defaults)

The `calibrate` mode chooses the bank's thresholds: clean streams drawn like these but from another seed,
and uniform noise (which, ranks alone deciding, stands for every continuous distribution), through the
detector with its alarms off, recording how high each alternative's CUSUM went where an alarm would have
counted; thresholds at which at most --target (0.5) of 1,000 streams of either kind would have alarmed.

    .venv/bin/python benchmarks/insights.py calibrate [--streams 20000] [--uniform-streams 10000] [--seed 1]
        [--target 0.5] [--alternatives "a,b,threshold;..."] [--reference-margin 1.5] [--processes 2]

The `throughput` mode measures the engine itself against the real ingest path, in one run:
    a fresh PostgreSQL database and Redis (--redis-url, emptied first); an insight-engine replica first
    takes every agent once (its checkpoints then start at each channel's end) and stops; a real
    `tars serve dashboard-api` process stores --evaluations evaluations through POST
    /api/v1/evaluations/batch (1,000 items a request, one agent each, spread over four regions, from
    --clients threads of this process, bodies encoded beforehand): the batched ingest rate, including
    the events it publishes. Then the dashboard is stopped and ONE engine replica (this process, its own
    runtime, as `tars serve insight-engine` builds it, observations counted by a sink that keeps them)
    is started over the backlog: evaluations processed per second, from its start (taking the agents,
    claiming the checkpoints) until every stored evaluation is covered by a stored checkpoint. The
    ratio of the two (target >= 1.5: the engine never falls behind), and the feed lag the engine
    reports as tars_insight_feed_lag_events (events not yet processed, summed over agents): its largest
    value while draining, and after.

    .venv/bin/python benchmarks/insights.py throughput [--evaluations 200000] [--agents 8] [--clients 4]
        [--redis-url redis://127.0.0.1:6379/15] [--postgres-admin-url ...] [--database-prefix tars_bench_]
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from _harness import add_postgres_arguments, emit

from tars.domain.insights import FindingState, Subject
from tars.insight.detectors.divergence import RegionDivergence
from tars.insight.detectors.health import EvaluationHealth
from tars.insight.detectors.regression import (
    Alternative,
    RegressionSettings,
    RewardRegression,
    rank_log_likelihood_ratios,
)

LENGTH = 1000
RATE_PER_MINUTE = 10
WINDOW = 5 * RATE_PER_MINUTE  # 5 minutes
BASELINE = 30 * RATE_PER_MINUTE  # 30 minutes, offset by the window
TARGETS = {"recall": 0.95, "false_positives_per_1000": 1.0, "median_delay": 30.0, "throughput_ratio": 1.5}

Floats = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class Stream:
    family: str
    group: str  # clean | drop | small_drop
    rewards: Floats
    change_at: int | None  # index of the first changed evaluation
    drop: float
    mechanism: str
    # The family's parameters before and after the change (the same for a stream without one).
    before: tuple[float, ...]
    after: tuple[float, ...]


# CartPole-like, parameters (p, q, b): an early failure with probability p, 8 + 142 * Beta(1.5, 6);
# else a success, 500 with probability q, else 500 - 350 * Beta(1, b).
FAILURE_MEAN = 8 + 142 * 1.5 / 7.5


def cartpole_mean(p: float, q: float, b: float) -> float:
    return (1 - p) * (500 - (1 - q) * 350 / (1 + b)) + p * FAILURE_MEAN


def cartpole_draw(rng: np.random.Generator, n: int, params: tuple[float, ...]) -> Floats:
    p, q, b = params
    failed = rng.random(n) < p
    perfect = rng.random(n) < q
    success = np.where(perfect, 500.0, 500.0 - 350.0 * rng.beta(1.0, b, n))
    result: Floats = np.where(failed, 8.0 + 142.0 * rng.beta(1.5, 6.0, n), success)
    return result


def cartpole_after(p: float, q: float, b: float, target: float, mechanism: str) -> tuple[tuple[float, ...], str]:
    """Parameters whose mean is ``target``, changed the way ``mechanism`` says (or the next that can)."""

    def shorter(goal: float) -> tuple[float, float, float] | None:
        q2 = q / 2
        success_mean = (goal - p * FAILURE_MEAN) / (1 - p)
        shortfall = (500 - success_mean) / (1 - q2)  # mean of 350 * Beta(1, b2)
        return (p, q2, 350 / shortfall - 1) if 0 < shortfall <= 280 else None

    def failures(q2: float, b2: float, goal: float) -> tuple[float, float, float] | None:
        success_mean = 500 - (1 - q2) * 350 / (1 + b2)
        p2 = (success_mean - goal) / (success_mean - FAILURE_MEAN)
        return (p2, q2, b2) if p <= p2 <= 0.95 else None

    mean = cartpole_mean(p, q, b)
    for kind in [mechanism, "mixed", "failures"]:
        if kind == "shorter" and (found := shorter(target)):
            return found, kind
        half = shorter(mean - (mean - target) / 2) if kind == "mixed" else None
        if half and (both := failures(half[1], half[2], target)):
            return both, kind
        if kind == "failures" and (found := failures(q, b, target)):
            return found, kind
    raise AssertionError("no CartPole change reaches the target")


def cartpole(rng: np.random.Generator, drop: float, improve: bool) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    p, q, b = rng.uniform(0.02, 0.15), rng.uniform(0.5, 0.95), 4.0
    if improve:
        return (p, q, b), (p / 3, min(0.98, q * 1.1), b), "improvement"
    if drop == 0:
        return (p, q, b), (p, q, b), "none"
    mechanism = ["failures", "shorter", "mixed"][int(rng.integers(3))]
    after, used = cartpole_after(p, q, b, (1 - drop) * cartpole_mean(p, q, b), mechanism)
    return (p, q, b), after, used


# Pendulum-like, parameters (m, cv, s): reward = -m / 1.025 * G * O, G ~ Gamma(1/cv^2, cv^2) (mean 1),
# O = 1, or 1.5-3 for 2 % of episodes (mean 1.025); except, with probability s, a failed swing-up
# costing 2.5 m * Gamma(25, 1/25). Mean -m (1 + 1.5 s). Better agents are relatively noisier (cv 0.55
# at -150, 0.2 at -1,300).
def pendulum_draw(rng: np.random.Generator, n: int, params: tuple[float, ...]) -> Floats:
    m, cv, s = params
    costly = np.where(rng.random(n) < 0.02, rng.uniform(1.5, 3.0, n), 1.0)
    usual = -m / 1.025 * rng.gamma(1 / cv**2, cv**2, n) * costly
    result: Floats = np.where(rng.random(n) < s, -2.5 * m * rng.gamma(25.0, 1 / 25.0, n), usual)
    return result


def pendulum(rng: np.random.Generator, drop: float, improve: bool) -> tuple[tuple[float, ...], tuple[float, ...], str]:
    low, high = math.log(150), math.log(1300)
    log_mu = rng.uniform(low, high)
    mu, cv = math.exp(log_mu), 0.55 + (0.2 - 0.55) * (log_mu - low) / (high - low)
    if improve:
        return (mu, cv, 0.0), (mu * 0.8, cv, 0.0), "improvement"
    if drop == 0:
        return (mu, cv, 0.0), (mu, cv, 0.0), "none"
    mechanism = ["costlier", "stuck", "mixed"][int(rng.integers(3))]
    base = {"costlier": mu * (1 + drop), "stuck": mu, "mixed": mu * (1 + drop / 2)}[mechanism]
    stuck_share = ((1 + drop) * mu / base - 1) / 1.5  # base (1 + 1.5 s) = (1 + drop) mu
    return (mu, cv, 0.0), (base, cv, stuck_share), mechanism


FAMILIES = {"cartpole": (cartpole, cartpole_draw), "pendulum": (pendulum, pendulum_draw)}


def generate(count: int, seed: int) -> list[Stream]:
    rng = np.random.default_rng(seed)
    streams = []
    groups = [("clean", count), ("drop", count), ("small_drop", max(1, count // 4))]
    for group, size in groups:
        for index in range(size):
            family = "cartpole" if index % 2 == 0 else "pendulum"
            improve = group == "clean" and rng.random() < 0.25
            change_at = int(rng.integers(300, 701)) if group != "clean" or improve else None
            drop = {"clean": 0.0, "drop": rng.uniform(0.2, 0.5), "small_drop": rng.uniform(0.03, 0.07)}[group]
            parameters, draw = FAMILIES[family]
            before, after, mechanism = parameters(rng, drop, improve)
            cut = LENGTH if change_at is None else change_at
            rewards = np.concatenate((draw(rng, cut, before), draw(rng, LENGTH - cut, after)))
            streams.append(Stream(family, group, rewards, change_at, float(drop), mechanism, before, after))
    return streams


# --- what any detector could do: the information bound -------------------------------------------
#
# Lorden (1971): a detector that raises a false alarm no more often than once in `gamma` evaluations
# needs, in the worst case, at least log(gamma) / KL evaluations after a change to signal it, KL being
# the Kullback-Leibler divergence of the rewards after the change from those before — even knowing both
# distributions exactly (asymptotically in gamma). At most one alarm in 1,000 clean streams of ~800
# watched evaluations each is gamma ~ 800,000.
GAMMA = 800_000


def _log_gamma_pdf(x: Floats, shape: float, scale: float) -> Floats:
    result: Floats = (shape - 1) * np.log(x) - x / scale - math.lgamma(shape) - shape * math.log(scale)
    return result


def _log_beta_pdf(y: Floats, a: float, b: float) -> Floats:
    result: Floats = (a - 1) * np.log(y) + (b - 1) * np.log1p(-y) + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    return result


def cartpole_kl(before: tuple[float, ...], after: tuple[float, ...]) -> float:
    (p, q, b), (p2, q2, b2) = before, after
    # The failures (same shape, share p -> p2), the atom at 500, and the shortened successes.
    grid = (np.arange(100_000) + 0.5) / 100_000  # Beta(1, b) on (0, 1), midpoint rule
    log_short = math.log((1 - p) * (1 - q)) + _log_beta_pdf(grid, 1.0, b)
    log_short2 = math.log((1 - p2) * (1 - q2)) + _log_beta_pdf(grid, 1.0, b2)
    short = float(np.mean(np.exp(log_short2) * (log_short2 - log_short)))
    atom = (1 - p2) * q2 * math.log((1 - p2) * q2 / ((1 - p) * q))
    return p2 * math.log(p2 / p) + atom + short


def _pendulum_log_density(x: Floats, params: tuple[float, ...]) -> Floats:
    """Log density of the cost x = -reward (the mixture pendulum_draw samples)."""
    m, cv, s = params
    shape, scale = 1 / cv**2, cv**2 * m / 1.025
    usual = np.log(0.98) + _log_gamma_pdf(x, shape, scale)
    costly = [_log_gamma_pdf(x, shape, scale * factor) for factor in np.linspace(1.5, 3.0, 16)]
    usual = np.logaddexp(usual, np.log(0.02 / 16) + np.logaddexp.reduce(costly, axis=0))
    if s == 0:
        return usual
    stuck = np.log(s) + _log_gamma_pdf(x, 25.0, 2.5 * m / 25.0)
    result: Floats = np.logaddexp(np.log1p(-s) + usual, stuck)
    return result


def pendulum_kl(before: tuple[float, ...], after: tuple[float, ...]) -> float:
    grid = np.geomspace(1e-3 * before[0], 20 * after[0], 8_000)
    log_before, log_after = _pendulum_log_density(grid, before), _pendulum_log_density(grid, after)
    return float(np.trapezoid(np.exp(log_after) * (log_after - log_before), grid))


def information_bound(streams: list[Stream]) -> dict[str, Any]:
    """The median over the drop streams of log(GAMMA) / KL: below it, no detector keeps its false alarms
    as rare as the target asks."""
    bounds = [
        math.log(GAMMA) / (cartpole_kl if stream.family == "cartpole" else pendulum_kl)(stream.before, stream.after)
        for stream in streams
        if stream.group == "drop"
    ]
    return {
        "false_alarm_once_in_evaluations": GAMMA,
        "median_delay": round(float(np.median(bounds)), 1),
        "share_of_drops_whose_bound_exceeds_30": round(float(np.mean(np.array(bounds) > 30)), 3),
    }


def cartpole_log_density(x: Floats, params: tuple[float, ...]) -> Floats:
    """Log density of cartpole_draw's rewards (the atom at 500 as its probability; the parts' supports
    do not overlap, and Jacobians common to both parameter sets are left out)."""
    p, q, b = params
    result = np.full(x.size, math.log((1 - p) * q))
    failed = x < 150.0
    shorter = ~failed & (x < 500.0)
    result[failed] = math.log(p) + _log_beta_pdf((x[failed] - 8.0) / 142.0, 1.5, 6.0)
    result[shorter] = math.log((1 - p) * (1 - q)) + _log_beta_pdf(
        np.clip((500.0 - x[shorter]) / 350.0, 1e-12, 1.0 - 1e-12), 1.0, b
    )
    return result


def log_likelihood_ratios(family: str, before: tuple[float, ...], after: tuple[float, ...], x: Floats) -> Floats:
    if family == "cartpole":
        return cartpole_log_density(x, after) - cartpole_log_density(x, before)
    costs = np.maximum(-x, 1e-9)
    return _pendulum_log_density(costs, after) - _pendulum_log_density(costs, before)


def oracle_peaks(ratios: Floats, start: int) -> Floats:
    """The CUSUM of log-likelihood ratios from ``start``, and its running maximum."""
    steps = np.concatenate(([0.0], np.cumsum(ratios[start:])))
    cusum = steps - np.minimum.accumulate(steps)
    return np.concatenate((np.full(start, -math.inf), np.maximum.accumulate(cusum[1:])))


def oracle(streams: list[Stream], batch: int, seed: int) -> dict[str, Any]:
    """The exact CUSUM of each drop stream's log-likelihood ratio: a detector that knows the rewards'
    distribution before the change and after it, watching from evaluation 200 as ours does, fed the same
    batches, its threshold set on clean data (four streams per drop stream, drawn from its 'before', the
    same pair's ratio) to the false-positive target (half the budget, as ours). What no detector that must
    learn the baseline and guess the change can beat; the bound above is the same thing asymptotically."""
    rng = np.random.default_rng(seed + 7)
    drops = [stream for stream in streams if stream.group == "drop"]
    start = RegressionSettings().warmup_size
    peaks = []
    for stream in drops:
        draw = FAMILIES[stream.family][1]
        for _ in range(4):
            clean = draw(rng, LENGTH, stream.before)
            peaks.append(
                oracle_peaks(log_likelihood_ratios(stream.family, stream.before, stream.after, clean), start)[-1]
            )
    threshold = tail_threshold(np.array(peaks), 0.5 / 1000)
    alarms = []
    for stream in drops:
        running = oracle_peaks(log_likelihood_ratios(stream.family, stream.before, stream.after, stream.rewards), start)
        crossed = np.flatnonzero(running >= threshold)
        alarms.append([] if crossed.size == 0 else [(int(crossed[0]) // batch + 1) * batch])
    delays = [delay for delay in detection_delays(drops, alarms) if delay is not None]
    return {
        "threshold_nats": round(threshold, 2),
        "clean_streams_for_the_threshold": len(peaks),
        "recall": round(len(delays) / len(drops), 4) if drops else None,
        "median_delay": float(np.median(delays)) if delays else None,
    }


def bank_efficiency(streams: list[Stream], alternatives: tuple[Alternative, ...], seed: int) -> dict[str, Any]:
    """How much of each drop's information the bank's alternatives can use, its baseline known: per drop
    stream, the mean log-likelihood ratio after the change (its drift, nats per evaluation) of each
    alternative scored against 4,000 rewards of the stream's 'before' (20,000 draws of its 'after'), over
    the KL divergence (the oracle's drift). A CUSUM's delay is about its threshold over its drift."""
    rng = np.random.default_rng(seed + 11)
    best, kls = [], []
    for stream in streams:
        if stream.group != "drop":
            continue
        draw = FAMILIES[stream.family][1]
        reference = np.sort(draw(rng, 4000, stream.before))
        drifts = rank_log_likelihood_ratios(reference, draw(rng, 20_000, stream.after), alternatives).mean(axis=1)
        best.append(float(drifts.max()))
        kls.append((cartpole_kl if stream.family == "cartpole" else pendulum_kl)(stream.before, stream.after))
    shares = np.array(best) / np.array(kls)
    return {
        "median_kl_nats": round(float(np.median(kls)), 3),
        "median_best_alternative_drift_nats": round(float(np.median(best)), 3),
        "median_share_of_kl": round(float(np.median(shares)), 3),
    }


# --- the two ways of watching a stream -------------------------------------------------------------


def ours(stream: Stream, batch: int, settings: RegressionSettings) -> list[int]:
    """Evaluations seen when the batch that opened each finding was processed."""
    detector = RewardRegression(Subject("bench", "env", "region"), settings)
    opened = []
    current: int | None = None  # the open finding's first_seen: later emissions of it are updates
    for start in range(0, LENGTH, batch):
        chunk = stream.rewards[start : start + batch]
        for finding in detector.observe(chunk):
            if finding.state is FindingState.OPEN and finding.first_seen != current:
                current = finding.first_seen
                opened.append(start + chunk.size)
            elif finding.state is FindingState.RESOLVED:
                current = None
    return opened


@dataclass(frozen=True)
class RuleView:
    """A stream as the static rule sees it: at each minute's evaluation, the evaluations seen so far and
    how far the 5-minute mean is below the baseline mean, in baseline standard deviations of one reward."""

    ends: npt.NDArray[np.int64]
    shortfall: Floats


def rule_view(stream: Stream) -> RuleView:
    values = stream.rewards
    sums = np.concatenate(([0.0], np.cumsum(values)))
    squares = np.concatenate(([0.0], np.cumsum(values**2)))
    ends = np.arange(WINDOW + BASELINE, LENGTH + 1, RATE_PER_MINUTE)
    window_mean = (sums[ends] - sums[ends - WINDOW]) / WINDOW
    base_from, base_to = ends - WINDOW - BASELINE, ends - WINDOW
    base_mean = (sums[base_to] - sums[base_from]) / BASELINE
    base_var = (squares[base_to] - squares[base_from]) / BASELINE - base_mean**2
    sigma = np.sqrt(np.maximum(base_var, 0.0) * BASELINE / (BASELINE - 1))
    return RuleView(ends, (base_mean - window_mean) / np.maximum(sigma, 1e-12))


def rule_alarms(view: RuleView, sigmas: float) -> list[int]:
    """Evaluations seen at each rule evaluation that started an alert (a rising edge) for
    mean_5m < baseline - sigmas * sigma."""
    firing = view.shortfall > sigmas
    rising = firing & ~np.concatenate(([False], firing[:-1]))
    return [int(end) for end in view.ends[rising]]


def calibrated_sigmas(streams: list[Stream], views: list[RuleView]) -> float:
    """The smallest multiplier (to 0.01 sigma of one reward) at which the rule raises at most one alert per
    1,000 of these clean streams: the static rule tuned on the very data it is scored on, its best case."""
    clean = [view for stream, view in zip(streams, views, strict=True) if stream.group == "clean"]
    budget = TARGETS["false_positives_per_1000"] * len(clean) / 1000
    low, high = 0.0, 3.0
    while sum(len(rule_alarms(view, high)) for view in clean) > budget:
        low, high = high, high * 2
    while high - low > 0.01:
        middle = (low + high) / 2
        low, high = (middle, high) if sum(len(rule_alarms(view, middle)) for view in clean) > budget else (low, middle)
    return high


# --- what they score --------------------------------------------------------------------------------


def detection_delays(streams: list[Stream], alarms: list[list[int]]) -> list[int | None]:
    """Per drop stream, the evaluations from the drop to its first alarm after it (None: never found)."""
    delays: list[int | None] = []
    for stream, found in zip(streams, alarms, strict=True):
        if stream.group == "drop":
            assert stream.change_at is not None
            first = next((at for at in found if at > stream.change_at), None)
            delays.append(None if first is None or found[0] <= stream.change_at else first - stream.change_at)
    return delays


def score(streams: list[Stream], alarms: list[list[int]]) -> dict[str, Any]:
    clean_alarms = sum(len(found) for stream, found in zip(streams, alarms, strict=True) if stream.group == "clean")
    clean = sum(stream.group == "clean" for stream in streams)
    small = [bool(found) for stream, found in zip(streams, alarms, strict=True) if stream.group == "small_drop"]
    drops = [stream for stream in streams if stream.group == "drop"]
    all_delays = detection_delays(streams, alarms)
    delays = [delay for delay in all_delays if delay is not None]
    # A miss counts as never found: the delay within which half of all the drops were found.
    with_misses = np.median([math.inf if delay is None else delay for delay in all_delays]) if drops else math.inf
    by_part: dict[str, list[int | None]] = defaultdict(list)
    for stream, delay in zip(drops, all_delays, strict=True):
        bucket = f"{int(stream.drop * 10) * 10}-{int(stream.drop * 10) * 10 + 10}%"
        for part in (f"{stream.family}", f"{stream.family}:{stream.mechanism}", f"drop {bucket}"):
            by_part[part].append(delay)
    return {
        "recall": round(len(delays) / len(drops), 4) if drops else None,
        "false_positives_per_1000": round(1000 * clean_alarms / clean, 2) if clean else None,
        "median_delay": float(np.median(delays)) if delays else None,
        "median_delay_counting_misses": None if math.isinf(with_misses) else float(with_misses),
        "p90_delay": float(np.percentile(delays, 90)) if delays else None,
        "alarms_before_the_drop": sum(
            at <= (stream.change_at or 0)
            for stream, found in zip(streams, alarms, strict=True)
            if stream.group == "drop"
            for at in found
        ),
        "sub_floor_drops_flagged": round(sum(small) / len(small), 4) if small else None,
        "by_part": {part: _part(values) for part, values in sorted(by_part.items())},
    }


def paired(ours_delays: list[int | None], peer_delays: list[int | None]) -> dict[str, Any]:
    """Delays on the drops both found: a peer that finds only the large drops looks fast on its own."""
    both = [(mine, theirs) for mine, theirs in zip(ours_delays, peer_delays, strict=True) if mine and theirs]
    return {
        "drops_both_found": len(both),
        "median_delay_ours": float(np.median([mine for mine, _ in both])) if both else None,
        "median_delay_peer": float(np.median([theirs for _, theirs in both])) if both else None,
    }


def _part(delays: list[int | None]) -> dict[str, Any]:
    found = [delay for delay in delays if delay is not None]
    return {
        "streams": len(delays),
        "recall": round(len(found) / len(delays), 4),
        "median_delay": float(np.median(found)) if found else None,
    }


def meets(result: dict[str, Any]) -> bool:
    return bool(
        result["recall"] is not None
        and result["recall"] >= TARGETS["recall"]
        and result["false_positives_per_1000"] <= TARGETS["false_positives_per_1000"]
        and result["median_delay"] is not None
        and result["median_delay"] <= TARGETS["median_delay"]
    )


# --- throughput -------------------------------------------------------------------------------------


def throughput(seed: int, batch: int, total: int, settings: RegressionSettings) -> dict[str, Any]:
    """Rewards per second through the reward-regression detector alone, and through every detector the
    service runs per evaluation (the batches spread over four regions, as one agent's are: a reward
    regression and an evaluation health detector per region, one region divergence detector)."""
    rng = np.random.default_rng(seed)
    parts = []
    while sum(part.size for part in parts) < total:  # stretches of 2,000 with a 30 % drop in each
        parts.append(cartpole_draw(rng, 1500, (0.08, 0.8, 4.0)))
        parts.append(cartpole_draw(rng, 500, (0.35, 0.8, 4.0)))
    rewards = np.concatenate(parts)[:total]
    failed = rng.random(total) < 0.01
    durations = rng.lognormal(math.log(20.0), 0.5, total)
    cuts = range(0, total, batch)
    chunks = [(rewards[at : at + batch], failed[at : at + batch], durations[at : at + batch]) for at in cuts]
    findings: Counter[str] = Counter()

    detector = RewardRegression(Subject("bench", "env", "region"), settings)
    started = time.perf_counter()
    for chunk, _, _ in chunks:
        for finding in detector.observe(chunk):
            findings[finding.state.value] += 1
    alone = total / (time.perf_counter() - started)

    regions = ["us-west-2", "us-east-1", "eu-west-1", "ap-southeast-1"]
    regression = {region: RewardRegression(Subject("bench", "env", region), settings) for region in regions}
    health = {region: EvaluationHealth(Subject("bench", "env", region)) for region in regions}
    divergence = RegionDivergence("bench", "env")
    started = time.perf_counter()
    for index, (chunk, failures, took) in enumerate(chunks):
        region = regions[index % len(regions)]
        regression[region].observe(chunk)
        health[region].observe(failures, took)
        divergence.observe(region, chunk)
    every = total / (time.perf_counter() - started)
    return {
        "batch": batch,
        "evaluations_per_second": round(alone),
        "evaluations_per_second_all_detectors": round(every),
        "findings": dict(findings),
    }


# --- throughput: the engine against batched ingest ----------------------------------------------------

REGIONS = ["us-west-2", "us-east-1", "eu-west-1", "ap-southeast-1"]


def engine_throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Batched ingest through the API, then one engine replica over what it stored (see the docstring)."""
    import asyncio
    import tempfile
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    import httpx
    import orjson
    from _harness import postgres_database
    from evaluations_api import add_user, base_url, dashboard_api, login, wait_database_idle

    from tars.settings import Settings
    from tars.storage import migrate
    from tars.storage.database import make_engine
    from tars.wiring.insight import build_insight_engine
    from tars.wiring.runtime import build_runtime

    rng = np.random.default_rng(args.seed)
    agents = [f"bench-{index}" for index in range(args.agents)]
    batches = max(1, args.evaluations // 1000)
    total = batches * 1000
    bodies = []
    for index in range(batches):  # CartPole-like rewards, one agent a batch, every region in each
        rewards = cartpole_draw(rng, 1000, (0.05, 0.8, 4.0))
        items = [
            {"agent_id": agents[index % len(agents)], "environment": "CartPole-v1", "reward": float(reward),
             "region": REGIONS[n % len(REGIONS)], "duration_ms": float(15 + n % 7)}
            for n, reward in enumerate(rewards)
        ]  # fmt: skip
        bodies.append(orjson.dumps({"items": items}))

    observations: Counter[str] = Counter()

    class CountingSink:
        def apply(self, found: Any) -> None:
            observations.update(observation.finding.kind.value for observation in found)

    with (
        postgres_database(args.postgres_admin_url, args.database_prefix + "insights") as database_url,
        dashboard_api(args.redis_url, database_url) as dashboard,  # empties the Redis database first
        tempfile.TemporaryDirectory(prefix="tars-bench-insights-") as folder,
    ):
        schema = make_engine(database_url)
        migrate.upgrade(schema)
        add_user(schema)
        schema.dispose()
        settings = Settings(
            data_dir=Path(folder),
            database_url=database_url,
            redis_url=args.redis_url,
            jwt_secret="bench-" + "x" * 40,
            log_level="WARNING",
            insight_replica="bench-replica",
            **({"clear_frequency": args.window} if args.window else {}),
        )
        if args.window:
            dashboard.env["TARS_CLEAR_FREQUENCY"] = str(args.window)
        runtime = build_runtime(settings, migrate_schema=False)
        try:
            for agent_id in agents:
                runtime.agents.create(agent_id=agent_id, algorithm="ppo", environment="CartPole-v1", hyperparameters={})

            async def take_every_agent() -> None:
                engine = build_insight_engine(runtime, CountingSink())
                task = asyncio.create_task(engine.run())
                while not set(agents) <= set(engine.owned()):
                    await asyncio.sleep(0.05)
                engine.stop()
                await task
                engine.close()

            asyncio.run(take_every_agent())

            dashboard.start()
            token = login(dashboard.port)
            url = base_url(dashboard.port) + "/api/v1/evaluations/batch"
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            local = threading.local()
            statuses: Counter[int] = Counter()

            def post(body: bytes) -> None:
                if not hasattr(local, "client"):
                    local.client = httpx.Client(timeout=120)
                statuses[local.client.post(url, content=body, headers=headers).status_code] += 1

            started = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(post, bodies))
            ingest_seconds = time.perf_counter() - started
            dashboard.stop(kill=False)
            wait_database_idle(database_url)
            if statuses != Counter({201: batches}):
                raise RuntimeError(f"the batches were not all stored: {dict(statuses)}")

            async def drain() -> dict[str, Any]:
                engine = build_insight_engine(runtime, CountingSink())
                task = asyncio.create_task(engine.run())
                begun = time.perf_counter()
                most = 0
                while engine.evaluations_processed < total:
                    if task.done():
                        task.result()
                        raise RuntimeError("the engine stopped before it caught up")
                    most = max(most, sum(engine.lag().values()))
                    await asyncio.sleep(0.01)
                seconds = time.perf_counter() - begun
                after = sum(engine.lag().values())
                engine.stop()
                await task
                engine.close()
                return {"seconds": seconds, "lag_events_max": most, "lag_events_after": after}

            drained = asyncio.run(drain())
        finally:
            runtime.close()
    ingest_rate = total / ingest_seconds
    engine_rate = total / drained["seconds"]
    ratio = engine_rate / ingest_rate
    return {
        "benchmark": "insights_throughput",
        "evaluations": total,
        "agents": args.agents,
        "window_events": args.window or 1000,
        "engine_read_from": "database (catch-up)"
        if args.window and total // 100 // args.agents > args.window
        else "the channels' windows",
        "ingest": {
            "endpoint": "POST /api/v1/evaluations/batch",
            "items_per_request": 1000,
            "clients": args.clients,
            "seconds": round(ingest_seconds, 2),
            "evaluations_per_second": round(ingest_rate),
        },
        "engine": {
            "replicas": 1,
            "seconds": round(drained["seconds"], 2),
            "evaluations_per_second": round(engine_rate),
            "feed_lag_events_max": drained["lag_events_max"],
            "feed_lag_events_after": drained["lag_events_after"],
            "observations": dict(observations),
        },
        "ratio_engine_to_ingest": round(ratio, 2),
        "target": {"ratio_engine_to_ingest": f">= {TARGETS['throughput_ratio']}"},
        "meets_target": ratio >= TARGETS["throughput_ratio"],
    }


# --- calibration: the thresholds, by simulation under no change ------------------------------------


class PeakProbe(RewardRegression):
    """The detector with its alarms off, recording the highest value each alternative's CUSUM reached
    where an alarm would have counted (an excursion of at least min_after rewards whose mean is at
    least the floor below the baseline's): it alarms on a stream exactly when a threshold is below."""

    def __init__(self, settings: RegressionSettings) -> None:
        silent = tuple(replace(item, threshold=math.inf) for item in settings.alternatives)
        super().__init__(Subject("calibrate", "env", "region"), replace(settings, alternatives=silent))
        self.peaks = np.full(len(silent), -math.inf)

    def _watch(self, values: Floats, start: int, findings: list[Any]) -> int:
        steps = np.cumsum(self._ratios(values) - self._allowances[:, None], axis=1)
        cusums = steps - np.minimum(np.minimum.accumulate(steps, axis=1), -np.asarray(self._cusums)[:, None])
        offsets = np.arange(values.size)
        last_zero = np.maximum.accumulate(np.where(cusums == 0.0, offsets, -1), axis=1)
        excursions = np.where(last_zero >= 0, start + last_zero + 1, np.asarray(self._excursions)[:, None])
        # The detector's floor check (_split) at every position: the reference's rewards before the
        # excursion (at least warmup_size of them) against every reward from it to the position.
        rewards = np.concatenate((self._window, self._recent, values))
        oldest = self._recent_start - self._window.size  # the position of rewards[0]
        sums = np.concatenate(([0.0], np.cumsum(rewards)))
        squares = np.concatenate(([0.0], np.cumsum(rewards**2)))
        change = np.maximum(excursions, oldest + self.settings.warmup_size)
        before = np.minimum(change, self._recent_start) - oldest  # baseline size
        ends = start + offsets - oldest + 1
        lengths = ends[None, :] - (change - oldest)
        base_mean = sums[before] / before
        base_spread = np.sqrt(np.maximum(squares[before] / before - base_mean**2, 0.0))
        after_mean = (sums[ends][None, :] - sums[change - oldest]) / np.maximum(lengths, 1)
        scale = np.maximum(np.maximum(np.abs(base_mean), base_spread), 1e-12)
        floor = self.settings.min_relative_drop
        long_enough = start + offsets - excursions + 1 >= self.settings.min_after  # as the detector counts it
        counts = long_enough & ((base_mean - after_mean) / scale >= floor)
        self.peaks = np.maximum(self.peaks, np.where(counts, cusums, -math.inf).max(axis=1))
        return super()._watch(values, start, findings)


def stream_peaks(args: tuple[list[Floats], RegressionSettings, int]) -> Floats:
    streams, settings, batch = args
    peaks = []
    for rewards in streams:
        probe = PeakProbe(settings)
        for start in range(0, rewards.size, batch):
            probe.observe(rewards[start : start + batch])
        peaks.append(probe.peaks)
    return np.array(peaks)


def all_peaks(streams: list[Floats], settings: RegressionSettings, batch: int, processes: int) -> Floats:
    from multiprocessing import get_context

    parts = [(streams[index::processes], settings, batch) for index in range(processes)]
    with get_context("fork").Pool(processes) as pool:
        found = pool.map(stream_peaks, parts)
    peaks = np.empty((len(streams), len(settings.alternatives)))
    for index, part in enumerate(found):
        peaks[index::processes] = part
    return peaks


def tail_threshold(peaks: Floats, probability: float) -> float:
    """The threshold a stream's peak exceeds with ``probability``: the empirical quantile where at least
    20 streams exceed it, else from an exponential fit of the survival function's tail (a CUSUM's peak
    exceeds h with probability ~ C exp(-c h)) between the 3 % and the 0.1 % quantiles."""
    ordered = np.sort(peaks)[::-1]
    count = ordered.size
    if probability * count >= 20:
        return float(ordered[int(probability * count)])
    ranks = np.arange(max(int(0.001 * count), 5), int(0.03 * count))
    slope, intercept = np.polyfit(ordered[ranks], np.log((ranks + 0.5) / count), 1)
    return float((math.log(probability) - intercept) / slope)


def calibrate(args: argparse.Namespace) -> dict[str, Any]:
    """Thresholds for the bank such that clean streams of LENGTH rewards raise at most --target false
    alarms per 1,000. Their shape: each alternative the same probability of alarming on a clean stream,
    from an exponential fit of its peaks' tail. Their level: shifted together, by the smallest amount
    (in 0.05 nats) at which the bank raises at most --target per 1,000 on the clean streams drawn like
    the benchmark's AND on uniform noise (which stands for every continuous distribution: ranks alone
    decide), counted, not extrapolated."""
    settings = replace(RegressionSettings(), alternatives=args.alternatives, reference_margin=args.reference_margin)
    started = time.perf_counter()
    clean = [stream.rewards for stream in generate(args.streams, args.seed) if stream.group == "clean"]
    rng = np.random.default_rng(args.seed + 1)
    uniform = [rng.random(LENGTH) for _ in range(args.uniform_streams)]
    peaks = all_peaks(clean, settings, args.batch, args.processes)
    uniform_peaks = all_peaks(uniform, settings, args.batch, args.processes)
    target = args.target / 1000
    reference_level = 0.01
    at_reference = np.array([tail_threshold(peaks[:, index], reference_level) for index in range(peaks.shape[1])])
    overlap = float(np.mean((peaks >= at_reference).any(axis=1))) / reference_level
    shape = np.array([tail_threshold(peaks[:, index], target / overlap) for index in range(peaks.shape[1])])

    def rate(found: Floats, thresholds: Floats) -> float:
        return float(np.mean((found >= thresholds).any(axis=1)))

    shift = -3.0
    while max(rate(peaks, shape + shift), rate(uniform_peaks, shape + shift)) > target:
        shift += 0.05
    thresholds = np.round(shape + shift, 2)
    chosen = tuple(
        replace(item, threshold=float(value)) for item, value in zip(args.alternatives, thresholds, strict=True)
    )
    watched = LENGTH - settings.warmup_size
    alarms = rate(peaks, thresholds)
    return {
        "benchmark": "insights_calibration",
        "clean_streams": len(clean),
        "uniform_streams": len(uniform),
        "seed": args.seed,
        "evaluations_per_stream": LENGTH,
        "batch": args.batch,
        "reference_margin": settings.reference_margin,
        "target_false_positives_per_1000": args.target,
        "overlap_of_alarms": round(overlap, 2),
        "shift_from_the_tail_fit_nats": round(shift, 2),
        "alternatives": format_alternatives(chosen),
        "false_positives_per_1000": {
            "clean_streams": round(1000 * alarms, 2),
            "uniform_streams": round(1000 * rate(uniform_peaks, thresholds), 2),
            "clean_streams_per_alternative": [
                round(1000 * float(np.mean(peaks[:, index] >= value)), 2) for index, value in enumerate(thresholds)
            ],
        },
        # evaluations watched per false alarm: the streams' watched evaluations over their alarms
        "arl0_evaluations": round(watched / alarms) if alarms else None,
        "seconds": round(time.perf_counter() - started, 1),
    }


def parse_alternatives(text: str) -> tuple[Alternative, ...]:
    return tuple(Alternative(*(float(part) for part in item.split(","))) for item in text.split(";") if item.strip())


def format_alternatives(alternatives: tuple[Alternative, ...]) -> str:
    return ";".join(f"{item.a:g},{item.b:g},{item.threshold:g}" for item in alternatives)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode")
    engine = modes.add_parser("throughput", help="the engine against batched ingest (PostgreSQL, Redis)")
    engine.add_argument("--evaluations", type=int, default=200_000)
    engine.add_argument("--agents", type=int, default=8)
    engine.add_argument("--clients", type=int, default=4, help="concurrent batch POSTs")
    engine.add_argument(
        "--window",
        type=int,
        default=None,
        help="events each channel keeps (TARS_CLEAR_FREQUENCY); smaller than the backlog's, the engine "
        "catches up from the database instead of the channels",
    )
    engine.add_argument("--seed", type=int, default=0)
    engine.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    add_postgres_arguments(engine)
    defaults = RegressionSettings()
    tune = modes.add_parser("calibrate", help="the detector's thresholds, by simulation on clean streams")
    tune.add_argument("--streams", type=int, default=20_000, help="clean streams (and as many drops, unused)")
    tune.add_argument("--seed", type=int, default=1, help="not the scoring run's 0")
    tune.add_argument("--target", type=float, default=0.5, help="false positives per 1,000 clean streams")
    tune.add_argument("--uniform-streams", type=int, default=10_000)
    tune.add_argument("--batch", type=int, default=10)
    tune.add_argument("--processes", type=int, default=2)
    tune.add_argument("--alternatives", type=parse_alternatives, default=defaults.alternatives)
    tune.add_argument("--reference-margin", type=float, default=defaults.reference_margin)
    parser.add_argument("--streams", type=int, default=1000, help="clean streams, and as many with a drop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=10, help="evaluations handed to the detector at once")
    parser.add_argument("--ingest-rate", type=float, default=90_000, help="batched ingest, evaluations/s")
    parser.add_argument("--throughput-evaluations", type=int, default=400_000)
    parser.add_argument(
        "--alternatives",
        type=parse_alternatives,
        default=defaults.alternatives,
        help="the detector's bank, as a,b,threshold;a,b,threshold (Beta(a, b), nats); default: "
        + format_alternatives(defaults.alternatives),
    )
    parser.add_argument("--reference-margin", type=float, default=defaults.reference_margin)
    args = parser.parse_args()
    if args.mode == "throughput":
        emit(engine_throughput(args))
        return
    if args.mode == "calibrate":
        emit(calibrate(args))
        return
    settings = replace(defaults, alternatives=args.alternatives, reference_margin=args.reference_margin)

    started = time.perf_counter()
    streams = generate(args.streams, args.seed)
    generated_s = time.perf_counter() - started
    started = time.perf_counter()
    ours_alarms = [ours(stream, args.batch, settings) for stream in streams]
    ours_s = time.perf_counter() - started
    views = [rule_view(stream) for stream in streams]
    tuned = calibrated_sigmas(streams, views)
    peers = {
        "prometheus_static_rule": 3.0,
        "prometheus_static_rule_sigma_of_mean": 3.0 / math.sqrt(WINDOW),
        "prometheus_static_rule_calibrated": tuned,
    }
    results = {"insight_engine": score(streams, ours_alarms)}
    ours_delays = detection_delays(streams, ours_alarms)
    for name, sigmas in peers.items():
        alarms = [rule_alarms(view, sigmas) for view in views]
        results[name] = {
            "sigmas_of_one_reward": round(sigmas, 3),
            **score(streams, alarms),
            "paired_with_ours": paired(ours_delays, detection_delays(streams, alarms)),
        }
    speed = [
        throughput(args.seed, batch, args.throughput_evaluations // (4 if batch == 1 else 1), settings)
        for batch in (1, 10, 100, 1000)
    ]
    at_batch = next((entry for entry in speed if entry["batch"] == args.batch), speed[1])
    ratio = at_batch["evaluations_per_second"] / args.ingest_rate
    ratio_all = at_batch["evaluations_per_second_all_detectors"] / args.ingest_rate
    emit(
        {
            "benchmark": "insights",
            "seed": args.seed,
            "streams": {"clean": args.streams, "drop": args.streams, "small_drop": max(1, args.streams // 4)},
            "evaluations_per_stream": LENGTH,
            "batch": args.batch,
            "peer_time_model": f"{RATE_PER_MINUTE} evaluations a minute; rule evaluated every minute, no `for`",
            "settings": {
                "alternatives": format_alternatives(settings.alternatives),
                "reference_margin": settings.reference_margin,
                "warmup_size": settings.warmup_size,
                "reference_size": settings.reference_size,
                "min_relative_drop": settings.min_relative_drop,
            },
            **results,
            "information_bound": information_bound(streams),
            "oracle_cusum": oracle(streams, args.batch, args.seed),
            "bank_efficiency": bank_efficiency(streams, settings.alternatives, args.seed),
            "throughput": speed,
            "ingest_rate_per_second": args.ingest_rate,
            "throughput_ratio_at_batch": round(ratio, 2),
            "throughput_ratio_at_batch_all_detectors": round(ratio_all, 2),
            "seconds": {"generate": round(generated_s, 1), "detect": round(ours_s, 1)},
            "targets": TARGETS,
            "meets_target": meets(results["insight_engine"]) and ratio_all >= TARGETS["throughput_ratio"],
            "against_each_peer": {name: _against(results["insight_engine"], results[name]) for name in peers},
        }
    )


def _against(ours_result: dict[str, Any], peer_result: dict[str, Any]) -> dict[str, str]:
    """Per metric, whether ours is better, the same or worse than the peer's (a peer that detects nothing
    has no delay to compare)."""

    def compare(mine: float | None, theirs: float | None, higher_is_better: bool) -> str:
        if theirs is None or mine is None:
            return "n/a"
        if mine == theirs:
            return "same"
        return "better" if (mine > theirs) is higher_is_better else "worse"

    return {
        "recall": compare(ours_result["recall"], peer_result["recall"], True),
        "false_positives_per_1000": compare(
            ours_result["false_positives_per_1000"], peer_result["false_positives_per_1000"], False
        ),
        "median_delay": compare(ours_result["median_delay"], peer_result["median_delay"], False),
    }


if __name__ == "__main__":
    main()
