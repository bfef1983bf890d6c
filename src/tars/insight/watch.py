"""Every detector of one agent, fed from its decoded events, and the times their positions stand for.

Evaluations are routed per chunk with array operations: grouped by (environment, region) with one
stable sort of their codes; within a group, the rewards of completed evaluations go to the subject's
reward regression (split where the run id changes) and to the environment's region divergence, and
every evaluation to the subject's evaluation health; evaluations that name their run go to the
environment's model regression, run by run. Training episodes go to their run's anomaly detector.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from tars.domain.insight_feed import RecordedEpisode, RunFacts
from tars.domain.insights import Finding, Observation, Subject
from tars.domain.progress import EpisodeFinished
from tars.domain.runs import RunStatus
from tars.insight.columns import EvaluationColumns, Floats, factorize
from tars.insight.detectors.divergence import RegionDivergence
from tars.insight.detectors.health import EvaluationHealth
from tars.insight.detectors.model import ModelRegression
from tars.insight.detectors.regression import RewardRegression
from tars.insight.detectors.training import TrainingAnomalies

# Gymnasium's spec.reward_threshold of each environment (a solved run neither stalls nor collapses);
# Pendulum-v1 has none. Written here so the engine need not load Gymnasium to know five numbers.
REWARD_THRESHOLDS: dict[str, float] = {
    "CartPole-v1": 475.0,
    "Acrobot-v1": -100.0,
    "MountainCar-v0": -110.0,
    "MountainCarContinuous-v0": 90.0,
}
# Earlier runs' env-steps/s kept per agent for the throughput rule.
THROUGHPUT_RUNS = 20
# Positions of a stream whose times are kept: an open finding's start further back than this is
# dated at the oldest kept (its insight keeps the first time it was given anyway).
TIMELINE_KEEP = 8192


class RunRecords(Protocol):
    """What the watch reads of runs from the database (the feed service provides it)."""

    def run_facts(self, run_ids: Sequence[str]) -> dict[str, RunFacts]: ...

    def episodes(self, run_id: str, after: int, up_to: int | None = None) -> list[RecordedEpisode]: ...

    def throughput_history(self, agent_id: str, runs: int) -> list[float]: ...


class Timeline:
    """When each of the latest positions of one detector's stream happened (seconds since the epoch)."""

    def __init__(self, keep: int = TIMELINE_KEEP) -> None:
        self._keep = keep
        self._first = 1  # the position of _times[0]
        self._times: Floats = np.empty(0)

    def extend(self, times: Floats, first_position: int | None = None) -> None:
        if first_position is not None and first_position != self._first + self._times.size:
            self._first, self._times = first_position, np.empty(0)  # a gap: what came before is not needed
        self._times = np.concatenate((self._times, times)) if self._times.size else np.asarray(times, np.float64)
        if self._times.size > 2 * self._keep:
            drop = self._times.size - self._keep
            self._times = self._times[drop:]
            self._first += drop

    def at(self, position: int) -> datetime:
        if self._times.size == 0:
            return datetime.now(UTC)
        index = min(max(position - self._first, 0), self._times.size - 1)
        return datetime.fromtimestamp(float(self._times[index]), tz=UTC)

    def observation(self, finding: Finding) -> Observation:
        last = self.at(finding.last_seen)
        # Stored times need not rise with positions (rows read back during a catch-up come before the
        # window's): a condition is never dated after the latest evidence of it.
        return Observation(finding, min(self.at(finding.first_seen), last), last)


class AgentWatch:
    """The detectors of one agent, made as its subjects appear.

    ``episodes_seen`` maps the runs whose episodes were processed to the last one: episodes at or
    before it are not processed again (a replay across a catch-up), and it travels in the checkpoint.
    """

    def __init__(self, agent_id: str, records: RunRecords, clock: Callable[[], float] = time.time) -> None:
        self.agent_id = agent_id
        self._records = records
        self._clock = clock
        self._regression: dict[tuple[str, str], tuple[RewardRegression, Timeline]] = {}
        self._health: dict[tuple[str, str], tuple[EvaluationHealth, Timeline]] = {}
        self._divergence: dict[str, tuple[RegionDivergence, Timeline]] = {}
        self._model: dict[str, tuple[ModelRegression, dict[str, Timeline]]] = {}
        self._training: dict[str, tuple[TrainingAnomalies, Timeline]] = {}
        self._facts: dict[str, RunFacts | None] = {}
        self._throughput: list[float] | None = None
        self.episodes_seen: dict[str, int] = {}
        # Episodes processed (not replayed) since the engine last took the count.
        self.episodes_processed = 0
        # When each run in episodes_seen ended (seconds since the epoch), to forget it a while later.
        self.ended: dict[str, float] = {}

    # Evaluations

    def evaluations(self, columns: EvaluationColumns, emit: bool = True) -> list[Observation]:
        """Feed evaluations in stored order; the observations of what they opened, updated or resolved
        (none with ``emit`` False: rebuilding state from what was already seen)."""
        observations: list[Observation] = []
        if columns.size == 0:
            return observations
        environment_codes, environments = factorize(columns.environments)
        region_codes, regions = factorize(columns.regions)
        keys = environment_codes * len(regions) + region_codes
        order = np.argsort(keys, kind="stable")
        cuts = np.flatnonzero(np.diff(keys[order])) + 1
        usable = ~columns.failed & np.isfinite(columns.rewards)
        for group in np.split(order, cuts):
            key = int(keys[group[0]])
            environment, region = str(environments[key // len(regions)]), str(regions[key % len(regions)])
            self._subject(environment, region, columns.take(group), usable[group], observations)
        with_run = usable & columns.run_ids.astype(bool)
        if with_run.any():
            self._models(columns.take(np.flatnonzero(with_run)), observations)
        return observations if emit else []

    def _subject(
        self, environment: str, region: str, part: EvaluationColumns, usable: np.ndarray, out: list[Observation]
    ) -> None:
        health, timeline = self._health_of(environment, region)
        timeline.extend(part.times)
        out.extend(timeline.observation(f) for f in health.observe(part.failed, part.durations_ms))
        if not usable.any():
            return
        rewards, times, runs = part.rewards[usable], part.times[usable], part.run_ids[usable]
        regression, timeline = self._regression_of(environment, region)
        starts = [0, *(np.flatnonzero(runs[1:] != runs[:-1]) + 1).tolist(), rewards.size]
        for start, end in itertools.pairwise(starts):
            timeline.extend(times[start:end])
            found = regression.observe(rewards[start:end], run_id=runs[start])
            out.extend(timeline.observation(f) for f in found)
        divergence, timeline = self._divergence_of(environment)
        timeline.extend(times)
        out.extend(timeline.observation(f) for f in divergence.observe(region, rewards))

    def _models(self, part: EvaluationColumns, out: list[Observation]) -> None:
        run_codes, runs = factorize(part.run_ids)
        self._learn_runs([str(run) for run in runs])
        environment_codes, environments = factorize(part.environments)
        for environment_code, environment in enumerate(environments):
            in_environment = environment_codes == environment_code
            model, timelines = self._model_of(str(environment))
            # Runs in the order they first appear: a run not seen before becomes the current one.
            for run_code in dict.fromkeys(run_codes[in_environment].tolist()):
                run_id = str(runs[run_code])
                rows = np.flatnonzero(in_environment & (run_codes == run_code))
                timeline = timelines.setdefault(run_id, Timeline())
                timeline.extend(part.times[rows])
                facts = self._facts.get(run_id)
                previous = facts.source_run_id if facts else None
                found = model.observe(run_id, part.rewards[rows], previous_run_id=previous)
                for finding in found:
                    dated = timelines.get(finding.subject.run_id or run_id, timeline)
                    out.append(dated.observation(finding))

    def _health_of(self, environment: str, region: str) -> tuple[EvaluationHealth, Timeline]:
        key = (environment, region)
        if key not in self._health:
            self._health[key] = (EvaluationHealth(Subject(self.agent_id, environment, region)), Timeline())
        return self._health[key]

    def _regression_of(self, environment: str, region: str) -> tuple[RewardRegression, Timeline]:
        key = (environment, region)
        if key not in self._regression:
            self._regression[key] = (RewardRegression(Subject(self.agent_id, environment, region)), Timeline())
        return self._regression[key]

    def _divergence_of(self, environment: str) -> tuple[RegionDivergence, Timeline]:
        if environment not in self._divergence:
            self._divergence[environment] = (RegionDivergence(self.agent_id, environment), Timeline())
        return self._divergence[environment]

    def _model_of(self, environment: str) -> tuple[ModelRegression, dict[str, Timeline]]:
        if environment not in self._model:
            self._model[environment] = (ModelRegression(self.agent_id, environment), {})
        model, timelines = self._model[environment]
        for run_id in list(timelines)[: max(0, len(timelines) - model.settings.max_runs)]:
            del timelines[run_id]  # the detector forgets runs beyond its last few; so do their times
        return model, timelines

    def _learn_runs(self, run_ids: Sequence[str]) -> None:
        unknown = [run_id for run_id in run_ids if run_id not in self._facts]
        if unknown:
            found = self._records.run_facts(unknown)
            self._facts.update({run_id: found.get(run_id) for run_id in unknown})

    # Training episodes and runs

    def episodes(
        self, run_id: str, items: Sequence[tuple[EpisodeFinished, float]], emit: bool = True
    ) -> list[Observation]:
        """Feed a run's episodes (with when each was seen) in order; those at or before the last one
        processed are skipped."""
        seen = self.episodes_seen.get(run_id, 0)
        fresh = [(episode, moment) for episode, moment in items if episode.episode > seen]
        if not fresh:
            return []
        detector, timeline = self._training_of(run_id, fresh[0][0].episode)
        timeline.extend(np.fromiter((moment for _, moment in fresh), np.float64, len(fresh)), fresh[0][0].episode)
        found = detector.observe([_with_non_finite(episode) for episode, _ in fresh])
        self.episodes_seen[run_id] = fresh[-1][0].episode
        self.ended.pop(run_id, None)
        if not emit:
            return []
        self.episodes_processed += len(fresh)
        return [timeline.observation(finding) for finding in found]

    def _training_of(self, run_id: str, first_episode: int) -> tuple[TrainingAnomalies, Timeline]:
        """The run's detector; made on first sight, from the run's earlier episodes in the database
        (without findings: they were seen before, by this replica or another)."""
        if run_id in self._training:
            return self._training[run_id]
        self._learn_runs([run_id])
        facts = self._facts.get(run_id)
        environment = facts.environment if facts else None
        if self._throughput is None:
            self._throughput = self._records.throughput_history(self.agent_id, THROUGHPUT_RUNS)
        detector = TrainingAnomalies(
            Subject(self.agent_id, environment, run_id=run_id),
            target_reward=REWARD_THRESHOLDS.get(environment or ""),
            throughput_history=self._throughput,
        )
        timeline = Timeline()
        self._training[run_id] = (detector, timeline)
        if first_episode > 1:
            earlier = self._records.episodes(run_id, 0, first_episode - 1)
            if earlier:
                times = np.fromiter((item.created_at.timestamp() for item in earlier), np.float64, len(earlier))
                timeline.extend(times, earlier[0].episode.episode)
                detector.observe([_with_non_finite(item.episode) for item in earlier])
        return self._training[run_id]

    def run_started(self, run_id: str) -> None:
        """A new attempt: the run's episodes begin again from 1."""
        self._training.pop(run_id, None)
        self.episodes_seen.pop(run_id, None)
        self.ended.pop(run_id, None)

    def run_finished(self, run_id: str, status: RunStatus) -> None:
        tracked = self._training.pop(run_id, None)
        if tracked is not None and status is RunStatus.SUCCEEDED and tracked[0].steps_per_second is not None:
            if self._throughput is None:
                self._throughput = self._records.throughput_history(self.agent_id, THROUGHPUT_RUNS)
            else:
                self._throughput = [*self._throughput, tracked[0].steps_per_second][-THROUGHPUT_RUNS:]
        if run_id in self.episodes_seen:
            self.ended[run_id] = self._clock()

    def forget_ended(self, before: float) -> None:
        """Runs that ended before ``before`` leave ``episodes_seen``: no catch-up reaches back to them."""
        for run_id in [run_id for run_id, at in self.ended.items() if at < before]:
            self.episodes_seen.pop(run_id, None)
            del self.ended[run_id]


def _with_non_finite(episode: EpisodeFinished) -> EpisodeFinished:
    """The episode as the anomaly detector reads it: a loss reported non-finite is NaN again."""
    return replace(episode, metrics=episode.all_metrics()) if episode.non_finite else episode
