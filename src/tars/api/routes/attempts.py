"""Where separate workers record their attempts at runs: they hold no database client of their own.

Workers authenticate as operators (an API key); their reports are not rate limited, as their
volume is set by training itself (see tars.api.ratelimit). A report arrives as the domain record
itself (``tars.domain.progress.Report``), read by the schema derived from it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from tars.api.deps import OperatorPrincipal, RuntimeDep
from tars.api.errors import UNREADABLE_BODY
from tars.api.schemas import AttemptEndIn, AttemptIn, AttemptOut, CancelCheckOut, RecoverIn, RecoverOut
from tars.domain.errors import Conflict
from tars.domain.progress import Report
from tars.domain.runs import RunStatus
from tars.services.report_schema import REPORT_SCHEMA

router = APIRouter(prefix="/api/v1", tags=["worker reports"])


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its definitions written in place: OpenAPI resolves a ``$ref`` against the
    whole document, where the schema's own ``$defs`` are not."""
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


RunId = Annotated[str, Path(min_length=1, max_length=64)]
AttemptNumber = Annotated[int, Path(ge=1, lt=2**31)]
STALE: dict[int | str, dict[str, Any]] = {
    409: {"description": "another attempt owns the run now: stop and drop the job"}
}


@router.post(
    "/runs/{run_id}/attempts",
    status_code=status.HTTP_201_CREATED,
    response_model=AttemptOut,
    responses={
        **UNREADABLE_BODY,
        404: {"description": "no such run"},
        409: {"description": "the run is finished or cancelled"},
    },
)
def start_attempt(run_id: RunId, body: AttemptIn, runtime: RuntimeDep, _principal: OperatorPrincipal) -> AttemptOut:
    """A worker took the run's job: a new attempt at it begins."""
    number = runtime.attempts.start(run_id, body.worker)
    if number is None:
        raise Conflict(f"run {run_id} is finished or cancelled; drop its job")
    return AttemptOut(number=number)


@router.get("/runs/{run_id}/attempts/{number}/cancel", response_model=CancelCheckOut, responses={404: {}})
def cancel_check(
    run_id: RunId, number: AttemptNumber, runtime: RuntimeDep, _principal: OperatorPrincipal
) -> CancelCheckOut:
    return CancelCheckOut(cancel_requested=runtime.attempts.cancel_requested(run_id))


@router.post(
    "/runs/{run_id}/attempts/{number}/reports",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**UNREADABLE_BODY, 404: {"description": "no such run"}, **STALE},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inlined(REPORT_SCHEMA.json_schema())}},
        }
    },
)
async def report(
    run_id: RunId, number: AttemptNumber, request: Request, runtime: RuntimeDep, _principal: OperatorPrincipal
) -> Response:
    """Episodes, evaluation episodes and a checkpoint, recorded together once per ``seq``."""
    report = _read_report(await request.body())
    await run_in_threadpool(runtime.attempts.report, run_id, number, report)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _read_report(body: bytes) -> Report:
    """The body as the domain record, read by the schema the worker wrote it with."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the body is not UTF-8 text") from None
    try:
        return REPORT_SCHEMA.validate_json(text)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])} for error in errors]) from None


@router.post(
    "/runs/{run_id}/attempts/{number}/end",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**UNREADABLE_BODY, 404: {"description": "no such run"}, **STALE},
)
def end_attempt(
    run_id: RunId, number: AttemptNumber, body: AttemptEndIn, runtime: RuntimeDep, _principal: OperatorPrincipal
) -> Response:
    """The attempt ended: the run finished (succeeded, failed, cancelled) or went back to the queue."""
    if body.status == "queued":
        runtime.attempts.requeue(run_id, number)
    else:
        runtime.attempts.finish(run_id, number, RunStatus(body.status), body.error)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/workers/recover",
    response_model=RecoverOut,
    responses={**UNREADABLE_BODY, 409: {"description": "embedded mode: nothing to recover"}},
)
async def recover(body: RecoverIn, runtime: RuntimeDep, _principal: OperatorPrincipal) -> RecoverOut:
    """Queue again the runs of these families that the job queue lost (Redis restarted without its data)."""
    requeued = await run_in_threadpool(runtime.training.recover_lost_jobs, body.algorithms)
    return RecoverOut(requeued=requeued)
