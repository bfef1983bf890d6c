"""An agent's events decoded into columns: batches and single submissions back in stored order, unknown
durations as NaN, failures flagged, episodes per run, and an event the engine cannot read skipped."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np

from tars.domain.evaluations import EVALUATION_FIELDS, Position
from tars.domain.events import Event, EventType
from tars.insight.columns import decode, factorize
from tars.services.evaluations import BATCH_EVENT_COLUMNS

EARLY = "2026-01-02T03:04:05.000001+00:00"
LATE = "2026-01-02T03:04:06+00:00"


def batch(rows: list[list[object]]) -> Event:
    return Event(EventType.EVALUATIONS_CREATED, {"agent_id": "ppo", "columns": BATCH_EVENT_COLUMNS, "rows": rows})


def single(id_: int, created_at: str, status: str = "completed") -> Event:
    values = [id_, "ppo", None, "CartPole-v1", "eu-west-1", 7.0, 10, None, status, created_at]
    return Event(EventType.EVALUATION_CREATED, dict(zip(EVALUATION_FIELDS, values, strict=True)))


def test_batches_and_singles_decode_into_columns_in_stored_order() -> None:
    decoded = decode(
        [
            batch([[3, "run-1", "CartPole-v1", "us-east-1", 500.0, 500, 12.5, "completed", LATE]]),
            single(1, EARLY),
            batch([[4, None, "CartPole-v1", "us-east-1", 20.0, 20, None, "failed", LATE]]),
            single(2, EARLY, status="failed"),
            Event(EventType.EVALUATIONS_CREATED, {"agent_id": "ppo", "columns": BATCH_EVENT_COLUMNS, "rows": [[5]]}),
            Event(EventType.EVALUATION_CREATED, {"agent_id": "ppo"}),
        ]
    )
    columns = decoded.evaluations
    assert columns.ids.tolist() == [1, 2, 3, 4]  # the unreadable two skipped, the rest by (created_at, id)
    assert columns.run_ids.tolist() == [None, None, "run-1", None]
    assert columns.failed.tolist() == [False, True, False, True]
    assert math.isnan(columns.durations_ms[0]) and columns.durations_ms[2] == 12.5
    assert columns.times[0] == datetime.fromisoformat(EARLY).timestamp()
    assert columns.last_position() == Position(datetime.fromisoformat(LATE).astimezone(UTC), 4)


def test_progress_is_decoded_per_run_and_a_new_attempt_starts_over() -> None:
    def progress(run_id: str, episode: int, **extra: object) -> Event:
        data = {"run_id": run_id, "agent_id": "ppo", "episodes_done": episode, "reward": 1.0, "length": 5}
        return Event(EventType.RUN_PROGRESS, {**data, "timesteps_done": 5 * episode, "metrics": {}, **extra})

    decoded = decode(
        [
            progress("a", 1),
            progress("b", 1, metrics={"loss": 0.5}, non_finite=["value_loss"]),
            Event(EventType.RUN_STARTED, {"run_id": "a", "agent_id": "ppo"}),
            progress("a", 1),
            progress("a", 2),
            Event(EventType.RUN_SUCCEEDED, {"run_id": "b", "agent_id": "ppo"}),
            progress("c", 1, reward="not a number"),
        ],
        now=100.0,
    )
    assert [(e.episode, at) for e, at in decoded.episodes["a"]] == [(1, 100.0), (2, 100.0)]
    [(episode, _)] = decoded.episodes["b"]
    assert episode.non_finite == ("value_loss",) and math.isnan(episode.all_metrics()["value_loss"])
    assert "c" not in decoded.episodes
    assert decoded.started == ["a"]
    assert [(run, status.value) for run, status in decoded.finished] == [("b", "succeeded")]


def test_factorize_codes_values_in_order_of_first_appearance() -> None:
    codes, uniques = factorize(np.array(["eu", None, "us", "eu", None], dtype=object))
    assert codes.tolist() == [0, 1, 2, 0, 1] and uniques == ["eu", None, "us"]
