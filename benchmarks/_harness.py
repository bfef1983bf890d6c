"""Shared pieces of the benchmarks: an embedded T.A.R.S. with one worker, and memory sampling."""

from __future__ import annotations

import json
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tars.cli.serving import make_worker
from tars.domain.runs import RunStatus
from tars.runtime import Runtime, build_runtime
from tars.services.training import TrainingRequest, submit_training
from tars.settings import Settings
from tars.storage import runs
from tars.worker.resources import process_tree_rss

MIB = 2**20


@contextmanager
def embedded_worker(**settings: Any) -> Iterator[Runtime]:
    """A throwaway embedded T.A.R.S. (SQLite, in-process queue) with one worker running."""
    with tempfile.TemporaryDirectory(prefix="tars-bench-") as data_dir:
        runtime = build_runtime(
            Settings(
                data_dir=Path(data_dir),
                jwt_secret=secrets.token_urlsafe(48),
                worker_name="bench-worker",
                log_level="WARNING",
                **settings,
            ),
            migrate_schema=True,
        )
        worker = make_worker(runtime)
        worker.start()
        try:
            yield runtime
        finally:
            worker.stop()
            worker.join(60)
            runtime.close()


def train_and_wait(runtime: Runtime, request: TrainingRequest, evaluation_episodes: int = 1) -> dict[str, Any]:
    run = submit_training(
        runtime.sessions,
        runtime.queue,
        runtime.bus,
        request,
        evaluation_episodes=evaluation_episodes,
        limits=runtime.settings.memory_limits,
        created_by=None,
    )
    while True:
        with runtime.sessions() as session:
            row = runs.get_run(session, run.id)
            if RunStatus(row.status).finished:
                if row.status != RunStatus.SUCCEEDED:
                    raise RuntimeError(f"run {row.id} {row.status}: {row.error}")
                assert row.started_at is not None and row.finished_at is not None
                return {
                    "run_id": row.id,
                    "timesteps": row.timesteps_done,
                    "seconds": (row.finished_at - row.created_at).total_seconds(),
                    "summary": runs.evaluation_summary(session, row.id),
                }
        time.sleep(0.05)


class RssSampler:
    """Samples the resident memory of this process and its children in the background."""

    def __init__(self, pid: int | None = None, every: float = 0.5) -> None:
        self.samples: list[tuple[float, int]] = []
        self._pid = pid
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self._every):
            self.samples.append((time.monotonic() - started, process_tree_rss(self._pid)))

    def peak_mib(self, since: float = 0.0) -> float:
        values = [rss for at, rss in self.samples if at >= since]
        return max(values, default=0) / MIB


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2))
