"""Runs one job in a fresh child process, so a job's memory is all returned when it ends."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from enum import StrEnum

from tars.domain.runs import TrainingJob
from tars.training.progress import ProgressMessage, TrainingDone, TrainingFailed
from tars.worker.child import child_main

POLL_SECONDS = 0.2
TERMINATE_GRACE_SECONDS = 5.0


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"


def run_job(
    job: TrainingJob,
    on_progress: Callable[[ProgressMessage], None],
    *,
    keep_alive: Callable[[], None],
    keep_alive_every: float,
    should_abort: Callable[[], bool],
) -> tuple[Outcome, str | None]:
    # spawn, not fork: the worker has threads, and a forked copy of them can deadlock.
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=child_main, args=(job.to_dict(), sender), name=f"tars-train-{job.run_id}")
    process.start()
    sender.close()
    last_keep_alive = time.monotonic()
    try:
        while True:
            if should_abort():
                _stop(process)
                return Outcome.ABORTED, None
            if time.monotonic() - last_keep_alive >= keep_alive_every:
                keep_alive()
                last_keep_alive = time.monotonic()
            if not receiver.poll(POLL_SECONDS):
                continue
            try:
                message = receiver.recv()
            except EOFError:
                process.join(TERMINATE_GRACE_SECONDS)
                return Outcome.FAILED, f"training process exited unexpectedly (exit code {process.exitcode})"
            if isinstance(message, TrainingDone):
                return Outcome.SUCCEEDED, None
            if isinstance(message, TrainingFailed):
                return Outcome.FAILED, message.error
            on_progress(message)
    finally:
        receiver.close()
        _stop(process)


def _stop(process: multiprocessing.process.BaseProcess) -> None:
    process.join(TERMINATE_GRACE_SECONDS if process.exitcode is None and not process.is_alive() else 0.5)
    if process.is_alive():
        process.terminate()
        process.join(TERMINATE_GRACE_SECONDS)
    if process.is_alive():
        process.kill()
        process.join()
