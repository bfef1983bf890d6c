"""The worker's lifecycle: start, take jobs, keep them alive, drain on shutdown."""

from __future__ import annotations

import logging
import threading
import time

from tars.bus.base import Delivery, JobQueue
from tars.services.recording import RunRecorder
from tars.training.progress import EpisodeFinished, EvaluationFinished, ProgressMessage
from tars.worker.executor import Outcome, run_job

log = logging.getLogger(__name__)

RECEIVE_TIMEOUT_SECONDS = 1.0
BACKOFF_SECONDS = 1.0


class Worker:
    def __init__(
        self,
        name: str,
        queue: JobQueue,
        recorder: RunRecorder,
        *,
        keep_alive_every: float,
        shutdown_grace: float,
        concurrency: int = 1,
    ) -> None:
        self.name = name
        self._queue = queue
        self._recorder = recorder
        self._keep_alive_every = keep_alive_every
        self._shutdown_grace = shutdown_grace
        self._concurrency = concurrency
        self._stopping = threading.Event()
        self._stop_requested_at: float | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(self._concurrency):
            slot = self.name if self._concurrency == 1 else f"{self.name}-{index}"
            thread = threading.Thread(target=self._loop, args=(slot,), name=f"worker-{slot}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("worker %s started with %d slot(s)", self.name, self._concurrency)

    def stop(self) -> None:
        """Take no new jobs; let running ones finish within the grace period, then hand them back."""
        if not self._stopping.is_set():
            self._stop_requested_at = time.monotonic()
            self._stopping.set()

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def run_until_stopped(self) -> None:
        self.start()
        while not self._stopping.wait(0.5):
            pass
        self.join()

    def _loop(self, slot: str) -> None:
        while not self._stopping.is_set():
            try:
                delivery = self._queue.receive(slot, RECEIVE_TIMEOUT_SECONDS)
            except Exception:
                log.exception("could not receive a job; retrying")
                self._stopping.wait(BACKOFF_SECONDS)
                continue
            if delivery is None:
                continue
            if self._stopping.is_set():
                self._queue.release(delivery)
                return
            try:
                self._process(delivery, slot)
            except Exception:
                # Most likely the database is unreachable: hand the job back rather than lose it.
                log.exception("run %s: could not record its outcome; handing it back", delivery.job.run_id)
                self._queue.release(delivery)
                self._stopping.wait(BACKOFF_SECONDS)

    def _keep_alive(self, delivery: Delivery, slot: str) -> None:
        try:
            self._queue.keep_alive(delivery, slot)
        except Exception as exc:
            # A blip in the queue must not fail a healthy run; the next keep-alive tries again.
            log.warning("run %s: keep-alive failed (%s)", delivery.job.run_id, exc)

    def _grace_expired(self) -> bool:
        return self._stop_requested_at is not None and time.monotonic() - self._stop_requested_at > self._shutdown_grace

    def _process(self, delivery: Delivery, slot: str) -> None:
        job = delivery.job
        log.info(
            "run %s (%s on %s): starting%s",
            job.run_id,
            job.agent_id,
            job.environment,
            " again after a lost worker" if delivery.redelivered else "",
        )
        try:
            self._recorder.started(job, slot)
        except Exception:
            log.exception("run %s: could not record its start; handing it back", job.run_id)
            self._queue.release(delivery)
            return

        def on_progress(message: ProgressMessage) -> None:
            if isinstance(message, EpisodeFinished):
                self._recorder.episode(job, message)
            elif isinstance(message, EvaluationFinished):
                self._recorder.evaluation(job, message)

        try:
            outcome, error = run_job(
                job,
                on_progress,
                keep_alive=lambda: self._keep_alive(delivery, slot),
                keep_alive_every=self._keep_alive_every,
                should_abort=self._grace_expired,
            )
        except Exception as exc:
            log.exception("run %s: worker error", job.run_id)
            outcome, error = Outcome.FAILED, f"worker error: {exc}"

        if outcome is Outcome.ABORTED:
            log.warning("run %s: shutdown grace period over; handing the job back", job.run_id)
            self._recorder.requeued(job)
            self._queue.release(delivery)
            return
        if outcome is Outcome.SUCCEEDED:
            self._recorder.succeeded(job)
        else:
            self._recorder.failed(job, error or "unknown error")
        self._queue.ack(delivery)
        log.info("run %s: %s", job.run_id, outcome.value)
