"""The worker's lifecycle: start, take jobs, keep them alive, heartbeat, drain on shutdown."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from tars.domain.jobs import Delivery
from tars.domain.progress import EpisodeFinished, EvaluationFinished, ModelSaved, ProgressMessage, Report
from tars.domain.runs import Attempt, RunStatus, StaleAttempt, TrainingJob
from tars.domain.workers import WorkerStatus
from tars.tracing.propagation import consuming, span
from tars.worker.executor import Outcome, StartTraining, start_in_thread, supervise
from tars.worker.ports import Heartbeats, JobSource
from tars.worker.resources import process_tree_rss

log = logging.getLogger(__name__)

RECEIVE_TIMEOUT_SECONDS = 1.0
BACKOFF_SECONDS = 1.0
CANCEL_CHECK_SECONDS = 1.0
KEEP_ALIVE_POLL_SECONDS = 0.2


class Recorder(Protocol):
    """Where a worker records its attempts: in the database itself when it runs beside the API
    services, through the orchestration service when it runs apart (it holds no database client).

    Every call but ``started`` raises ``StaleAttempt`` once another worker has taken the run over.
    """

    def started(self, job: TrainingJob, worker: str) -> Attempt | None:
        """A new attempt at ``job``, or None when its run is already finished or cancelled."""
        ...

    def cancel_requested(self, attempt: Attempt) -> bool: ...

    def report(self, attempt: Attempt, report: Report) -> None: ...

    def finished(self, attempt: Attempt, status: RunStatus, error: str | None = None) -> None: ...

    def requeued(self, attempt: Attempt) -> None: ...


class Worker:
    def __init__(
        self,
        name: str,
        queue: JobSource,
        recorder: Recorder,
        *,
        artifact_dir: Path,
        keep_alive_every: float,
        shutdown_grace: float,
        concurrency: int = 1,
        registry: Heartbeats | None = None,
        heartbeat_every: float = 10.0,
        max_jobs: int = 0,
        algorithms: tuple[str, ...] = (),
        on_heartbeat: Callable[[WorkerStatus], None] | None = None,
        start_training: StartTraining = start_in_thread,
    ) -> None:
        self.name = name
        self._queue = queue
        self._recorder = recorder
        self._artifact_dir = artifact_dir
        self._keep_alive_every = keep_alive_every
        self._shutdown_grace = shutdown_grace
        self._concurrency = concurrency
        self._registry = registry
        self._heartbeat_every = heartbeat_every
        self._max_jobs = max_jobs
        self._algorithms = algorithms
        self._on_heartbeat = on_heartbeat
        self._start_training = start_training
        self._stopping = threading.Event()
        self._stop_requested_at: float | None = None
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._current: dict[str, Delivery] = {}  # slot -> the job it trains
        self._jobs_done = 0
        self._started_at = time.time()

    # lifecycle

    def start(self) -> None:
        for index in range(self._concurrency):
            slot = self.name if self._concurrency == 1 else f"{self.name}-{index}"
            thread = threading.Thread(target=self._loop, args=(slot,), name=f"worker-{slot}", daemon=True)
            thread.start()
            self._threads.append(thread)
        slots = list(self._threads)
        heartbeat = threading.Thread(target=self._heartbeat_loop, name=f"heartbeat-{self.name}", daemon=True)
        # Apart from the slots: a slot waiting on its recorder (the orchestration service away)
        # must not let its job look abandoned and be claimed by another worker.
        keep_alive = threading.Thread(
            target=self._keep_alive_loop, args=(slots,), name=f"keep-alive-{self.name}", daemon=True
        )
        for thread in (heartbeat, keep_alive):
            thread.start()
            self._threads.append(thread)
        log.info("worker %s started with %d slot(s)", self.name, self._concurrency)

    def stop(self) -> None:
        """Take no new jobs; let running ones finish within the grace period, then hand them back."""
        if not self._stopping.is_set():
            self._stop_requested_at = time.monotonic()
            self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def status(self) -> WorkerStatus:
        with self._lock:
            current = sorted(delivery.job.run_id for delivery in self._current.values())
            jobs_done = self._jobs_done
        return WorkerStatus(
            name=self.name,
            algorithms=list(self._algorithms),
            slots=self._concurrency,
            busy=len(current),
            runs=current,
            jobs_done=jobs_done,
            rss_bytes=process_tree_rss(),
            started_at=self._started_at,
            last_seen=time.time(),
            state="draining" if self._stopping.is_set() else "running",
        )

    # heartbeat

    def _heartbeat_loop(self) -> None:
        while True:
            self._beat()
            if not self._stopping.wait(self._heartbeat_every):
                continue
            # Draining: keep beating at the usual pace until every slot is done. (Waiting on the
            # already-set stop event again would return at once and spin, beating non-stop.)
            slots = [t for t in self._threads if t is not threading.current_thread()]
            deadline = time.monotonic() + self._heartbeat_every
            for thread in slots:
                thread.join(max(0.0, deadline - time.monotonic()))
            if not any(thread.is_alive() for thread in slots):
                break
        if self._registry is not None:
            try:
                self._registry.remove(self.name)
            except Exception:
                log.warning("could not remove worker %s from the registry", self.name)

    def _beat(self) -> None:
        status = self.status()
        if self._on_heartbeat is not None:
            self._on_heartbeat(status)
        if self._registry is not None:
            try:
                self._registry.beat(status, ttl=self._heartbeat_every * 3)
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)

    # jobs

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
                with consuming(
                    "job.process",
                    delivery.trace,
                    transport=self._queue.transport,
                    attributes={
                        "tars.run_id": delivery.job.run_id,
                        "tars.worker": slot,
                        "tars.redelivered": delivery.redelivered,
                    },
                ):
                    self._process(delivery, slot)
            except StaleAttempt as exc:
                # Another worker owns the job now; its delivery is theirs to acknowledge.
                log.warning("%s; leaving the job to its new worker", exc)
            except Exception:
                # Most likely the database is unreachable: hand the job back rather than lose it.
                log.exception("run %s: could not record its outcome; handing it back", delivery.job.run_id)
                self._queue.release(delivery)
                self._stopping.wait(BACKOFF_SECONDS)
            finally:
                with self._lock:
                    self._current.pop(slot, None)
            self._count_job()

    def _count_job(self) -> None:
        with self._lock:
            self._jobs_done += 1
            done = self._jobs_done
        if self._max_jobs and done >= self._max_jobs:
            log.info("worker %s did %d jobs, its recycle limit; stopping", self.name, done)
            self.stop()

    def _grace_expired(self) -> bool:
        return self._stop_requested_at is not None and time.monotonic() - self._stop_requested_at > self._shutdown_grace

    def _process(self, delivery: Delivery, slot: str) -> None:
        job = delivery.job
        attempt = self._recorder.started(job, slot)
        if attempt is None:
            log.info("run %s is already finished or cancelled; dropping its job", job.run_id)
            self._queue.ack(delivery)
            return
        with self._lock:
            self._current[slot] = delivery
        log.info(
            "run %s (%s %s on %s): attempt %d on %s",
            job.run_id,
            job.kind,
            job.agent_id,
            job.environment,
            attempt.number,
            slot,
        )
        model_path = self._artifact_dir / "runs" / job.run_id / f"attempt-{attempt.number}" / "model.zip"
        reports = itertools.count(1)
        with span(f"job.{job.kind}", {"tars.attempt": attempt.number, "tars.algorithm": job.algorithm}):
            outcome, error = supervise(
                self._start_training(job, model_path),
                lambda messages: self._recorder.report(attempt, _report(next(reports), messages)),
                tick=self._ticker(delivery, attempt),
            )
        if outcome is Outcome.ABORTED:
            log.warning("run %s: shutdown grace period over; handing the job back", job.run_id)
            self._recorder.requeued(attempt)
            self._queue.release(delivery)
            return
        status = {
            Outcome.SUCCEEDED: RunStatus.SUCCEEDED,
            Outcome.FAILED: RunStatus.FAILED,
            Outcome.CANCELLED: RunStatus.CANCELLED,
        }[outcome]
        self._recorder.finished(attempt, status, error)
        self._queue.ack(delivery)
        log.info("run %s: %s", job.run_id, status.value)

    def _ticker(self, delivery: Delivery, attempt: Attempt) -> Callable[[], Outcome | None]:
        last_cancel_check = time.monotonic()

        def tick() -> Outcome | None:
            nonlocal last_cancel_check
            now = time.monotonic()
            if self._grace_expired():
                return Outcome.ABORTED
            if now - last_cancel_check >= CANCEL_CHECK_SECONDS:
                last_cancel_check = now
                try:
                    if self._recorder.cancel_requested(attempt):
                        return Outcome.CANCELLED
                except Exception as exc:
                    log.warning("run %s: could not check for cancellation (%s)", delivery.job.run_id, exc)
            return None

        return tick

    def _keep_alive_loop(self, slots: list[threading.Thread]) -> None:
        last = time.monotonic()
        while any(thread.is_alive() for thread in slots):
            time.sleep(min(KEEP_ALIVE_POLL_SECONDS, self._keep_alive_every))
            if time.monotonic() - last < self._keep_alive_every:
                continue
            last = time.monotonic()
            with self._lock:
                current = list(self._current.items())
            for slot, delivery in current:
                self._keep_alive(delivery, slot)

    def _keep_alive(self, delivery: Delivery, slot: str) -> None:
        try:
            self._queue.keep_alive(delivery, slot)
        except Exception as exc:
            # A blip in the queue must not fail a healthy run; the next keep-alive tries again.
            log.warning("run %s: keep-alive failed (%s)", delivery.job.run_id, exc)


def _report(seq: int, messages: list[ProgressMessage]) -> Report:
    models = [message for message in messages if isinstance(message, ModelSaved)]
    return Report(
        seq=seq,
        episodes=tuple(message for message in messages if isinstance(message, EpisodeFinished)),
        evaluations=tuple(message for message in messages if isinstance(message, EvaluationFinished)),
        model=models[-1] if models else None,
    )
