"""A separate worker records its attempts through the orchestration service, not in the database.

So a worker holds no database client (nor its credentials, nor its memory: SQLAlchemy and a
driver cost every worker ~20 MB) and the database's connections do not grow with the fleet. The
orchestration service stores each report with the same fencing as a worker beside it would.

HTTP goes through the standard library: a worker loads no HTTP client library either.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from dataclasses import asdict
from typing import Any
from urllib.parse import quote, urlsplit

from tars.domain.runs import Attempt, RunStatus, StaleAttempt, TrainingJob
from tars.tracing.propagation import trace_headers
from tars.training.progress import Report

log = logging.getLogger(__name__)

# Answers that mean "try again shortly": the service restarting, or its database away.
_RETRY_STATUSES = {502, 503, 504}
_MAX_ERROR_CHARS = 4000  # what the orchestration service keeps of an error


class OrchestrationUnavailable(RuntimeError):
    """The orchestration service could not take a call for as long as the worker keeps trying."""


class OrchestrationRefused(RuntimeError):
    """The orchestration service refused a call in a way no retry mends (a wrong key, a bad report)."""


class OrchestrationClient:
    """JSON calls over a kept-alive connection per thread, retried while the service is away."""

    def __init__(self, base_url: str, api_key: str, *, retry_seconds: float, timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the orchestration URL {base_url!r} is not an http(s) URL")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self._retry_seconds = retry_seconds
        self._timeout = timeout
        self._local = threading.local()

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(status, decoded body) of the first answer that is not a retryable failure."""
        payload = None if body is None else json.dumps(body).encode()
        deadline = time.monotonic() + self._retry_seconds
        delay = 0.2
        while True:
            try:
                status, answer = self._once(method, self._prefix + path, payload)
                if status not in _RETRY_STATUSES:
                    return status, answer
                problem = f"HTTP {status}: {answer}"
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() + delay > deadline:
                raise OrchestrationUnavailable(f"{method} {path}: {problem} (retried for {self._retry_seconds:.0f} s)")
            log.warning(
                "orchestration service unavailable for %s %s (%s); retrying in %.1f s", method, path, problem, delay
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _once(self, method: str, path: str, payload: bytes | None) -> tuple[int, Any]:
        reused = getattr(self._local, "connection", None) is not None
        try:
            return self._exchange(method, path, payload)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            if not reused:
                raise
            # The service closed an idle kept-alive connection (uvicorn does after 5 s): not an outage.
            self._drop_connection()
            return self._exchange(method, path, payload)

    def _exchange(self, method: str, path: str, payload: bytes | None) -> tuple[int, Any]:
        connection = self._connection()
        # The orchestration service continues the job's trace: its writes show under the job.
        connection.request(method, path, body=payload, headers={**self._headers, **trace_headers()})
        response = connection.getresponse()
        raw = response.read()
        if response.getheader("connection", "").lower() == "close":
            self._drop_connection()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            connection = kind(self._host, self._port, timeout=self._timeout)
            self._local.connection = connection
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


class RemoteRecorder:
    """The worker's Recorder (tars.worker.loop) over the orchestration service's attempts API."""

    def __init__(self, client: OrchestrationClient) -> None:
        self._client = client

    def started(self, job: TrainingJob, worker: str) -> Attempt | None:
        status, answer = self._client.call("POST", f"{_run_path(job.run_id)}/attempts", {"worker": worker})
        if status == 201:
            return Attempt(job, int(answer["number"]))
        if status in (404, 409):  # deleted, finished or cancelled: nothing left to do
            return None
        raise _refused("start an attempt", status, answer)

    def cancel_requested(self, attempt: Attempt) -> bool:
        status, answer = self._client.call("GET", f"{_attempt_path(attempt)}/cancel")
        if status == 200:
            return bool(answer["cancel_requested"])
        raise _refused("check for cancellation", status, answer)

    def report(self, attempt: Attempt, report: Report) -> None:
        body = {
            "seq": report.seq,
            "episodes": [asdict(episode) for episode in report.episodes],
            "evaluations": [asdict(result) for result in report.evaluations],
            "model": None if report.model is None else asdict(report.model),
        }
        self._expect_done(attempt, "reports", body)

    def finished(self, attempt: Attempt, status: RunStatus, error: str | None = None) -> None:
        self._expect_done(attempt, "end", {"status": status.value, "error": error and error[-_MAX_ERROR_CHARS:]})

    def requeued(self, attempt: Attempt) -> None:
        self._expect_done(attempt, "end", {"status": RunStatus.QUEUED.value})

    def recover(self, algorithms: list[str]) -> None:
        """Ask for the runs Redis lost to be queued again (this worker re-created their groups)."""
        status, answer = self._client.call("POST", "/api/v1/workers/recover", {"algorithms": algorithms})
        if status != 200:
            raise _refused("recover lost jobs", status, answer)
        if answer["requeued"]:
            log.warning("the job queue had lost %d queued run(s); queued again", len(answer["requeued"]))

    def check_access(self) -> None:
        """Fail at start on a key the service refuses, rather than on the first job."""
        status, answer = self._client.call("GET", "/api/v1/runs?limit=1")
        if status in (401, 403):
            raise _refused("authenticate", status, answer)

    def _expect_done(self, attempt: Attempt, action: str, body: dict[str, Any]) -> None:
        status, answer = self._client.call("POST", f"{_attempt_path(attempt)}/{action}", body)
        if status == 204:
            return
        if status in (404, 409):
            raise StaleAttempt(f"run {attempt.job.run_id}: attempt {attempt.number} no longer owns it")
        raise _refused(f"record {action}", status, answer)


def _run_path(run_id: str) -> str:
    return f"/api/v1/runs/{quote(run_id, safe='')}"


def _attempt_path(attempt: Attempt) -> str:
    return f"{_run_path(attempt.job.run_id)}/attempts/{attempt.number}"


def _refused(action: str, status: int, answer: Any) -> OrchestrationRefused:
    detail = answer.get("detail", answer) if isinstance(answer, dict) else answer
    return OrchestrationRefused(f"the orchestration service refused to {action}: HTTP {status}: {detail}")
