"""Reading runs: lists, one run with what it produced, its checkpoint."""

from __future__ import annotations

from pathlib import Path

from tars.domain.errors import NotFound
from tars.domain.runs import ModelFile, Run, RunDetail, RunStatus
from tars.storage import runs
from tars.storage.database import SessionFactory
from tars.storage.runs import run_record


class RunService:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def list_runs(self, *, agent_id: str | None = None, status: RunStatus | None = None, limit: int = 50) -> list[Run]:
        with self._sessions() as session:
            return [run_record(row) for row in runs.list_runs(session, agent_id=agent_id, status=status, limit=limit)]

    def detail(self, run_id: str) -> RunDetail:
        with self._sessions() as session:
            row = runs.get_run(session, run_id)
            return RunDetail(
                **vars(run_record(row)),
                has_model=row.model_path is not None,
                rewards=runs.step_rewards(session, run_id),
                metrics=runs.latest_metrics(session, run_id),
                evaluation=runs.evaluation_summary(session, run_id),
            )

    def model_file(self, run_id: str) -> ModelFile:
        with self._sessions() as session:
            row = runs.get_run(session, run_id)
        if row.model_path is None or not Path(row.model_path).is_file():
            raise NotFound("model of run", run_id)
        return ModelFile(path=row.model_path, filename=f"{row.agent_id}-{run_id}.zip")
