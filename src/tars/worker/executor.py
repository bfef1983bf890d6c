"""Runs one job in a fresh child process, so all of a job's memory is returned when it ends."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from tars.domain.runs import TrainingJob
from tars.training.progress import ProgressMessage, TrainingDone, TrainingFailed
from tars.worker.child import child_main

POLL_SECONDS = 0.2
TERMINATE_GRACE_SECONDS = 5.0


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Stopped before finishing, to be handed back to the queue (shutdown past its grace period).
    ABORTED = "aborted"


def run_in_child(
    job: TrainingJob,
    model_path: Path,
    on_progress: Callable[[ProgressMessage], None],
    *,
    tick: Callable[[], Outcome | None],
) -> tuple[Outcome, str | None]:
    """Run ``job`` in a child; ``tick`` is called a few times a second and may stop it early."""
    # spawn, not fork: the worker has threads, and a forked copy of them can deadlock.
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=child_main, args=(job.to_dict(), str(model_path), sender), name=f"tars-train-{job.run_id}"
    )
    process.start()
    sender.close()
    finished = False
    try:
        while True:
            stop = tick()
            if stop is not None:
                return stop, None
            if not receiver.poll(POLL_SECONDS):
                continue
            try:
                message = receiver.recv()
            except EOFError:
                process.join(TERMINATE_GRACE_SECONDS)
                return Outcome.FAILED, f"training process exited unexpectedly (exit code {process.exitcode})"
            if isinstance(message, TrainingDone):
                finished = True
                return Outcome.SUCCEEDED, None
            if isinstance(message, TrainingFailed):
                finished = True
                return Outcome.FAILED, message.error
            on_progress(message)
    finally:
        receiver.close()
        _stop(process, finished)


def _stop(process: multiprocessing.process.BaseProcess, finished: bool) -> None:
    # A child that reported its end is exiting by itself; give it a moment to do so cleanly.
    process.join(TERMINATE_GRACE_SECONDS if finished else 0)
    if process.is_alive():
        # SIGKILL, not SIGTERM: the child ignores SIGTERM (see child._leave_signals_to_the_worker).
        process.kill()
        process.join()
