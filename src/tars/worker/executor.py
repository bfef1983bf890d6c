"""Where a job's training runs, and how its worker watches it.

Two ways, one interface:

- ``start_in_thread``: in the worker process itself. A dedicated worker (``tars worker``) does
  nothing else, so it keeps torch and SB3 loaded across jobs and pays no start-up per job; it
  releases each job's models, environments and buffers when the job ends.
- ``start_in_subprocess``: in a fresh spawned child per job. ``tars up`` uses it, so the API
  services sharing that process never hold torch or a model, and a crash in training cannot
  take them down.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from tars.domain.progress import ProgressMessage, TrainingDone, TrainingFailed, TrainingStopped
from tars.domain.runs import TrainingJob
from tars.worker.child import child_main
from tars.worker.resources import error_detail, release_memory

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
# Progress messages recorded together at most (a report's size when recording lags behind).
MAX_BATCH = 500
# After the first message of a batch, what follows within this long goes with it: a short episode
# each made its own report (an HTTP call and a transaction), which cost a fast training a few
# percent of its speed; a tenth of a second later on the dashboard costs nobody anything.
LINGER_SECONDS = 0.1
TERMINATE_GRACE_SECONDS = 5.0
# A thread cannot be killed: a stopped job gets this long to reach its next step and return.
THREAD_STOP_SECONDS = 60.0


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Stopped before finishing, to be handed back to the queue (shutdown past its grace period).
    ABORTED = "aborted"


class TrainingEnded(Exception):
    """The training went away without saying how it ended (a child process that died)."""


class Training(Protocol):
    """A job being trained somewhere; its worker reads its progress and may stop it."""

    def next_message(self, timeout: float) -> ProgressMessage | None:
        """The next message, or None if none came within ``timeout``; raises ``TrainingEnded``."""
        ...

    def stop(self, finished: bool) -> None:
        """Stop the training (at once unless it ``finished``) and release what it holds."""
        ...


StartTraining = Callable[[TrainingJob, Path], Training]


def supervise(
    training: Training,
    on_progress: Callable[[list[ProgressMessage]], None],
    *,
    tick: Callable[[], Outcome | None],
) -> tuple[Outcome, str | None]:
    """Pass on ``training``'s progress until it ends; ``tick`` is called a few times a second and may stop it.

    Progress goes on in batches of whatever is ready, so recording never falls behind a fast
    training: the slower the recording, the larger the batches.
    """
    finished = False
    try:
        while True:
            stop = tick()
            if stop is not None:
                return stop, None
            batch, ending = _ready_messages(training)
            if batch:
                on_progress(batch)
            if isinstance(ending, TrainingDone):
                finished = True
                return Outcome.SUCCEEDED, None
            if isinstance(ending, TrainingFailed):
                finished = True
                return Outcome.FAILED, ending.error
            if isinstance(ending, TrainingEnded):
                return Outcome.FAILED, str(ending)
    finally:
        training.stop(finished)


def _ready_messages(
    training: Training,
) -> tuple[list[ProgressMessage], TrainingDone | TrainingFailed | TrainingEnded | None]:
    """Progress ready now (waiting up to POLL_SECONDS for the first, then gathering what follows for
    LINGER_SECONDS), and the end if it came."""
    batch: list[ProgressMessage] = []
    timeout = POLL_SECONDS
    linger_until: float | None = None
    while len(batch) < MAX_BATCH:
        try:
            message = training.next_message(timeout)
        except TrainingEnded as exc:
            return batch, exc
        if message is None:
            break
        if isinstance(message, TrainingDone | TrainingFailed):
            return batch, message
        batch.append(message)
        if linger_until is None:
            linger_until = time.monotonic() + LINGER_SECONDS
        timeout = max(0.0, linger_until - time.monotonic())
    return batch, None


class ThreadTraining:
    def __init__(self, job: TrainingJob, model_path: Path) -> None:
        self._messages: queue.SimpleQueue[ProgressMessage] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(job, model_path), name=f"tars-train-{job.run_id}", daemon=True
        )
        self._thread.start()

    def _run(self, job: TrainingJob, model_path: Path) -> None:
        from tars.training.runner import run_job  # torch is loaded by the first job, not at start-up

        try:
            run_job(job, self._send, model_path, should_stop=self._stopping.is_set)
        except TrainingStopped:
            return
        except Exception as exc:
            log.exception("run %s: training failed", job.run_id)
            self._messages.put(TrainingFailed(error=error_detail(exc)))
        else:
            self._messages.put(TrainingDone())

    def _send(self, message: ProgressMessage) -> None:
        if self._stopping.is_set():
            raise TrainingStopped()
        self._messages.put(message)

    def next_message(self, timeout: float) -> ProgressMessage | None:
        try:
            return self._messages.get(timeout=timeout)
        except queue.Empty:
            if not self._thread.is_alive() and self._messages.empty():
                raise TrainingEnded("training thread ended without a result") from None
            return None

    def stop(self, finished: bool) -> None:
        self._stopping.set()
        self._thread.join(THREAD_STOP_SECONDS)
        if self._thread.is_alive():
            log.error("%s did not stop within %.0f s; leaving it behind", self._thread.name, THREAD_STOP_SECONDS)
        release_memory()


def start_in_thread(job: TrainingJob, model_path: Path) -> Training:
    return ThreadTraining(job, model_path)


class SubprocessTraining:
    def __init__(self, job: TrainingJob, model_path: Path) -> None:
        # spawn, not fork: the worker has threads, and a forked copy of them can deadlock.
        context = multiprocessing.get_context("spawn")
        self._receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=child_main, args=(job.to_dict(), str(model_path), sender), name=f"tars-train-{job.run_id}"
        )
        self._process.start()
        sender.close()

    def next_message(self, timeout: float) -> ProgressMessage | None:
        if not self._receiver.poll(timeout):
            return None
        try:
            message: ProgressMessage = self._receiver.recv()
        except EOFError:
            self._process.join(TERMINATE_GRACE_SECONDS)
            raise TrainingEnded(f"training process exited unexpectedly (exit code {self._process.exitcode})") from None
        return message

    def stop(self, finished: bool) -> None:
        self._receiver.close()
        # A child that reported its end is exiting by itself; give it a moment to do so cleanly.
        self._process.join(TERMINATE_GRACE_SECONDS if finished else 0)
        if self._process.is_alive():
            # SIGKILL, not SIGTERM: the child ignores SIGTERM (see child._leave_signals_to_the_worker).
            self._process.kill()
            self._process.join()


def start_in_subprocess(job: TrainingJob, model_path: Path) -> Training:
    return SubprocessTraining(job, model_path)
