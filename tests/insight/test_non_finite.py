"""A loss that goes NaN or infinite reaches the insight engine in both modes: the worker reports it by
name (JSON has no such numbers, so as a value it was null and the report refused), the orchestration
service stores and announces it, and the engine opens a non-finite-loss finding on the run."""

from __future__ import annotations

import math
from typing import Any

from fastapi.testclient import TestClient

from tars.domain.insights import FindingKind, Severity
from tars.domain.progress import EpisodeFinished, Report, split_non_finite
from tars.services.report_schema import REPORT_SCHEMA
from tars.services.runtime import Runtime
from tars.storage.tables import TrainingStepRow
from tars.training.callbacks import EpisodeProgressCallback, LatestValuesWriter
from tests.insight.conftest import RecordingSink
from tests.insight.test_catch_up import report, started_attempt
from tests.waiting import eventually


def test_the_worker_reports_a_non_finite_loss_by_name() -> None:
    writer = LatestValuesWriter()
    writer.write({"train/loss": math.nan, "train/value_loss": math.inf, "train/entropy_loss": -0.6}, {})
    reported: list[Any] = []
    callback = EpisodeProgressCallback(None, reported.append, writer)
    callback.locals = {"infos": [{"episode": {"r": 12.0, "l": 12}}]}
    callback.num_timesteps = 12
    callback._on_step()
    [episode] = reported
    assert episode.non_finite == ("loss", "value_loss")
    assert set(episode.metrics) == {"entropy_loss", "steps_per_second"}
    assert math.isnan(episode.all_metrics()["loss"]) and math.isnan(episode.all_metrics()["value_loss"])
    # What travels is plain JSON, and reads back as it was sent.
    assert REPORT_SCHEMA.validate_json(REPORT_SCHEMA.dump_json(Report(1, episodes=(episode,)))).episodes == (episode,)


def test_a_non_finite_value_itself_is_refused_by_name(
    orchestration: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]]
) -> None:
    run_id = started_attempt(orchestration, runtime, auth["operator"], "dqn")
    body = REPORT_SCHEMA.dump_json(Report(1, episodes=(EpisodeFinished(1, 1.0, 1, 1, {"loss": math.nan}),)))
    response = orchestration.post(
        f"/api/v1/runs/{run_id}/attempts/1/reports",
        content=body,
        headers={**auth["operator"], "Content-Type": "application/json"},
    )
    assert response.status_code == 422 and "metrics" in response.text


def test_a_loss_gone_nan_reaches_the_engine_as_a_critical_finding_on_its_run(
    orchestration: TestClient, runtime: Runtime, auth: dict[str, dict[str, str]], replicas: Any
) -> None:
    sink = RecordingSink()
    replica = replicas("solo", sink)
    eventually(lambda: replica.owns({"dqn"}), message="the replica to own dqn")
    operator = auth["operator"]
    run_id = started_attempt(orchestration, runtime, operator, "dqn")

    def episode(number: int, loss: float) -> EpisodeFinished:
        metrics, non_finite = split_non_finite({"loss": loss, "steps_per_second": 900.0})
        return EpisodeFinished(number, 20.0, 20, 20 * number, metrics, non_finite)

    report(orchestration, operator, run_id, 1, [episode(1, 0.4), episode(2, 0.3)])
    report(orchestration, operator, run_id, 2, [episode(3, -math.inf), episode(4, math.nan)])
    found = eventually(lambda: sink.found(FindingKind.NON_FINITE_LOSS), message="the non-finite loss")
    [observation] = found
    assert observation.finding.subject.run_id == run_id
    assert observation.finding.severity is Severity.CRITICAL
    assert (observation.finding.first_seen, observation.finding.evidence["losses"]) == (3, "loss")
    with runtime.sessions() as session:
        stored = session.query(TrainingStepRow).filter_by(run_id=run_id, episode=3).one()
        assert stored.non_finite == ["loss"] and "loss" not in (stored.metrics or {})
    detail = orchestration.get(f"/api/v1/runs/{run_id}", headers=operator)
    assert detail.status_code == 200 and detail.json()["metrics"]["steps_per_second"] == 900.0
