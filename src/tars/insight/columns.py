"""An agent's events decoded into what the detectors take: evaluations as columns (numpy arrays, one
per field, so that routing them is a few array operations per chunk), training episodes per run, and
the runs that started or ended.

Decoding is the only per-evaluation Python work: a batch event's rows are transposed in one step and
each column made an array at once; a created_at string is parsed once per distinct value (a batch
shares one).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from tars.domain.evaluations import EVALUATION_FIELDS, Evaluation, Position
from tars.domain.events import Event, EventType
from tars.domain.progress import EpisodeFinished
from tars.domain.runs import RunStatus

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
Objects = npt.NDArray[np.object_]
Codes = npt.NDArray[np.intp]

log = logging.getLogger(__name__)

FAILED = "failed"
_FINISHED = {
    EventType.RUN_SUCCEEDED: RunStatus.SUCCEEDED,
    EventType.RUN_FAILED: RunStatus.FAILED,
    EventType.RUN_CANCELLED: RunStatus.CANCELLED,
}


@dataclass(frozen=True)
class EvaluationColumns:
    """Evaluations in the order they were stored, one array per field; ``times`` in seconds since the epoch."""

    ids: Ints
    run_ids: Objects
    environments: Objects
    regions: Objects
    rewards: Floats
    durations_ms: Floats
    failed: Bools
    times: Floats

    @property
    def size(self) -> int:
        return int(self.ids.size)

    def take(self, index: npt.NDArray[Any]) -> EvaluationColumns:
        return EvaluationColumns(
            self.ids[index],
            self.run_ids[index],
            self.environments[index],
            self.regions[index],
            self.rewards[index],
            self.durations_ms[index],
            self.failed[index],
            self.times[index],
        )

    def last_position(self) -> Position | None:
        """The newest (created_at, id) among them: where a catch-up from the database resumes."""
        if self.size == 0:
            return None
        latest = np.lexsort((self.ids, self.times))[-1]
        return Position(datetime.fromtimestamp(float(self.times[latest]), tz=UTC), int(self.ids[latest]))

    @staticmethod
    def empty() -> EvaluationColumns:
        return EvaluationColumns(
            np.empty(0, np.int64),
            np.empty(0, object),
            np.empty(0, object),
            np.empty(0, object),
            np.empty(0),
            np.empty(0),
            np.empty(0, np.bool_),
            np.empty(0),
        )

    @staticmethod
    def concat(parts: Sequence[EvaluationColumns]) -> EvaluationColumns:
        parts = [part for part in parts if part.size]
        if not parts:
            return EvaluationColumns.empty()
        if len(parts) == 1:
            return parts[0]
        return EvaluationColumns(*(np.concatenate([getattr(part, name) for part in parts]) for name in _COLUMN_NAMES))

    @staticmethod
    def of_records(rows: Sequence[Evaluation]) -> EvaluationColumns:
        """From evaluations read back from the database."""
        if not rows:
            return EvaluationColumns.empty()
        ids, _, runs, environments, regions, rewards, _, durations, statuses, created = zip(*rows, strict=True)
        moments = {moment: moment.timestamp() for moment in set(created)}
        return _columns(ids, runs, environments, regions, rewards, durations, statuses, created, moments)


_COLUMN_NAMES = ("ids", "run_ids", "environments", "regions", "rewards", "durations_ms", "failed", "times")


def _columns(
    ids: Sequence[Any],
    runs: Sequence[Any],
    environments: Sequence[Any],
    regions: Sequence[Any],
    rewards: Sequence[Any],
    durations: Sequence[Any],
    statuses: Sequence[Any],
    created: Sequence[Any],
    moments: dict[Any, float],
) -> EvaluationColumns:
    size = len(ids)
    return EvaluationColumns(
        ids=np.fromiter(ids, np.int64, size),
        run_ids=_objects(runs),
        environments=_objects(environments),
        regions=_objects(regions),
        rewards=np.array(rewards, dtype=np.float64),
        # None (unknown) becomes NaN, which the detectors read as unknown.
        durations_ms=np.array(durations, dtype=np.float64),
        failed=_objects(statuses) == FAILED,
        times=np.fromiter(map(moments.__getitem__, created), np.float64, size),
    )


def _objects(values: Sequence[Any]) -> Objects:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def factorize(values: Objects) -> tuple[Codes, list[Hashable]]:
    """Each value's code (its index among the distinct values, in order of first appearance), and
    the distinct values: one dictionary look-up per value, the fastest way to group strings."""
    listed = values.tolist()
    uniques = list(dict.fromkeys(listed))
    index = {value: code for code, value in enumerate(uniques)}
    return np.fromiter(map(index.__getitem__, listed), np.intp, len(listed)), uniques


@dataclass
class Decoded:
    """What a chunk of an agent's events said."""

    evaluations: EvaluationColumns
    # Per run, its episodes in order and when each was seen (seconds since the epoch).
    episodes: dict[str, list[tuple[EpisodeFinished, float]]] = field(default_factory=dict)
    # Runs that started an attempt (which begins their episodes anew), and that ended, with how.
    started: list[str] = field(default_factory=list)
    finished: list[tuple[str, RunStatus]] = field(default_factory=list)


def decode(events: Iterable[Event], now: float | None = None) -> Decoded:
    """An agent's events, in order. A progress event carries no time: episodes get ``now`` (they are
    read moments after they are published; read back from the database, their stored time)."""
    moment = time.time() if now is None else now
    blocks: dict[tuple[str, ...], list[list[list[Any]]]] = {}
    singles: list[list[Any]] = []
    decoded = Decoded(EvaluationColumns.empty())
    for event in events:
        kind, data = event.type, event.data
        try:
            if kind == EventType.EVALUATIONS_CREATED:
                blocks.setdefault(tuple(data["columns"]), []).append(data["rows"])
            elif kind == EventType.EVALUATION_CREATED:
                singles.append([data[name] for name in EVALUATION_FIELDS])
            elif kind == EventType.RUN_PROGRESS:
                episode = _episode(data)
                if episode is not None:
                    decoded.episodes.setdefault(str(data["run_id"]), []).append((episode, moment))
            elif kind == EventType.RUN_STARTED:
                decoded.started.append(str(data["run_id"]))
                decoded.episodes.pop(str(data["run_id"]), None)  # a new attempt starts its episodes over
            elif kind in _FINISHED:
                decoded.finished.append((str(data["run_id"]), _FINISHED[kind]))
        except (KeyError, TypeError):
            _skipped(event)
    parts = [_from_events(list(columns), rows) for columns, rows in blocks.items()]
    if singles:
        parts.append(_from_events(list(EVALUATION_FIELDS), [singles]))
    decoded.evaluations = _in_stored_order(parts, len(blocks) + bool(singles))
    return decoded


def _from_events(columns: list[str], events: list[list[list[Any]]]) -> EvaluationColumns:
    """The rows of many events at once; if they will not decode together, event by event, skipping
    those that do not decode at all (an event this engine cannot read must not stop its agent)."""
    try:
        return _from_rows(columns, [row for rows in events for row in rows])
    except (KeyError, TypeError, ValueError):
        parts = []
        for rows in events:
            try:
                parts.append(_from_rows(columns, rows))
            except (KeyError, TypeError, ValueError):
                _skipped(rows)
        return EvaluationColumns.concat(parts)


def _skipped(what: object) -> None:
    log.error("insight engine: skipped an event it cannot read: %.300r", what)


def _in_stored_order(parts: list[EvaluationColumns], kinds: int) -> EvaluationColumns:
    joined = EvaluationColumns.concat(parts)
    if kinds > 1:  # batches and single submissions interleaved: back in the order they were stored
        joined = joined.take(np.lexsort((joined.ids, joined.times)))
    return joined


def _from_rows(columns: list[str], rows: list[list[Any]]) -> EvaluationColumns:
    if not rows:
        return EvaluationColumns.empty()
    values = dict(zip(columns, zip(*rows, strict=True), strict=True))
    created = values["created_at"]
    moments = {text: datetime.fromisoformat(text).timestamp() for text in set(created)}
    return _columns(
        values["id"],
        values["run_id"],
        values["environment"],
        values["region"],
        values["reward"],
        values["duration_ms"],
        values["status"],
        created,
        moments,
    )


def _metrics(values: Any) -> dict[str, float]:
    return {str(name): float(value) for name, value in (values or {}).items() if value is not None}


def _episode(data: dict[str, Any]) -> EpisodeFinished | None:
    try:
        return EpisodeFinished(
            episode=int(data["episodes_done"]),
            reward=float(data["reward"]),
            length=int(data["length"]),
            timesteps=int(data["timesteps_done"]),
            metrics=_metrics(data.get("metrics")),
            non_finite=tuple(str(name) for name in data.get("non_finite") or ()),
        )
    except (KeyError, TypeError, ValueError):
        return None  # not a progress report this engine can read: skipped, not fatal
