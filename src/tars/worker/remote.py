"""A separate worker records its attempts through the orchestration service, not in the database.

So a worker holds no database client (nor its credentials, nor its memory: SQLAlchemy and a
driver cost every worker ~20 MB) and the database's connections do not grow with the fleet. The
orchestration service stores each report with the same fencing as a worker beside it would.

One pooled httpx client (kept-alive connections, a closed one replaced quietly) with explicit
timeouts; calls are retried with exponential backoff and jitter (stamina) while the service is
away. A report travels as the domain record, serialised once by a schema derived from it.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any
from urllib.parse import quote

from tars.domain.progress import Report
from tars.domain.runs import Attempt, RunStatus, StaleAttempt, TrainingJob
from tars.services.report_schema import REPORT_SCHEMA
from tars.tracing.propagation import trace_headers

# httpx loads its own command-line client (rich and pygments, ~5 MB) whenever those happen to be
# installed; a worker never runs it. A None entry makes that optional import fail, as httpx allows.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402
import stamina  # noqa: E402

log = logging.getLogger(__name__)

# Answers that mean "try again shortly": the service restarting, or its database away.
_RETRY_STATUSES = {502, 503, 504}
_MAX_ERROR_CHARS = 4000  # what the orchestration service keeps of an error
_FIRST_WAIT_SECONDS = 0.2
_LONGEST_WAIT_SECONDS = 5.0


class OrchestrationUnavailable(RuntimeError):
    """The orchestration service could not take a call for as long as the worker keeps trying."""


class OrchestrationRefused(RuntimeError):
    """The orchestration service refused a call in a way no retry mends (a wrong key, a bad report)."""


class _Away(Exception):
    """One try found the service away: no connection, or an answer that says to come back."""


class OrchestrationClient:
    """JSON calls over one pooled client, retried while the service is away."""

    def __init__(
        self, base_url: str, api_key: str, *, retry_seconds: float, timeout: float = 30.0, connect_timeout: float = 5.0
    ) -> None:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"the orchestration URL {base_url!r} is not an http(s) URL")
        self._retry_seconds = retry_seconds
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            # No TLS context (and its CA bundle in memory) for a plain-HTTP orchestration URL.
            verify=url.scheme == "https",
        )

    def call(self, method: str, path: str, body: Any = None, *, content: bytes | None = None) -> tuple[int, Any]:
        """(status, decoded body) of the first answer that is not a retryable failure; ``body`` goes as
        JSON, or ``content`` as already-serialised JSON."""
        if body is not None:
            content = json.dumps(body).encode()
        try:
            for attempt in stamina.retry_context(
                on=_Away,
                attempts=None,
                timeout=self._retry_seconds,
                wait_initial=_FIRST_WAIT_SECONDS,
                wait_max=_LONGEST_WAIT_SECONDS,
            ):
                with attempt:
                    try:
                        return self._once(method, path, content)
                    except _Away as exc:
                        log.warning(
                            "orchestration service unavailable for %s %s (%s); retrying in %.1f s",
                            method,
                            path,
                            exc,
                            attempt.next_wait,
                        )
                        raise
        except _Away as exc:
            raise OrchestrationUnavailable(f"{method} {path}: {exc} (retried for {self._retry_seconds:.0f} s)") from exc
        raise AssertionError("stamina ended its retries without an answer or an error")

    def close(self) -> None:
        self._http.close()

    def _once(self, method: str, path: str, content: bytes | None) -> tuple[int, Any]:
        try:
            # The orchestration service continues the job's trace: its writes show under the job.
            response = self._http.request(method, path, content=content, headers=trace_headers())
        except httpx.TransportError as exc:
            raise _Away(f"{type(exc).__name__}: {exc}") from exc
        try:
            answer = response.json() if response.content else None
        except ValueError:
            answer = response.text
        if response.status_code in _RETRY_STATUSES:
            raise _Away(f"HTTP {response.status_code}: {answer}")
        return response.status_code, answer


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
        self._expect_done(attempt, "reports", content=REPORT_SCHEMA.dump_json(report))

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

    def close(self) -> None:
        self._client.close()

    def _expect_done(
        self, attempt: Attempt, action: str, body: dict[str, Any] | None = None, *, content: bytes | None = None
    ) -> None:
        status, answer = self._client.call("POST", f"{_attempt_path(attempt)}/{action}", body, content=content)
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
