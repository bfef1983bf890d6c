"""Where separate workers record their attempts at runs: they hold no database client of their own.

Workers authenticate as operators (an API key); their reports are not rate limited, as their
volume is set by training itself (see tars.api.ratelimit).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response, status
from starlette.concurrency import run_in_threadpool

from tars.api.deps import OperatorPrincipal, RuntimeDep
from tars.api.errors import UNREADABLE_BODY
from tars.api.schemas import (
    AttemptEndIn,
    AttemptIn,
    AttemptOut,
    CancelCheckOut,
    RecoverIn,
    RecoverOut,
    ReportIn,
)
from tars.bus.redis_streams import RedisJobQueue
from tars.domain.agents import ALGORITHMS
from tars.domain.errors import Conflict, InvalidField
from tars.domain.runs import Attempt, RunStatus
from tars.services.recording import RunRecorder
from tars.services.runtime import Runtime
from tars.services.training import job_of_run, recover_lost_jobs
from tars.training.progress import EpisodeFinished, EvaluationFinished, ModelSaved, Report

router = APIRouter(prefix="/api/v1", tags=["worker reports"])

RunId = Annotated[str, Path(min_length=1, max_length=64)]
AttemptNumber = Annotated[int, Path(ge=1, lt=2**31)]
STALE: dict[int | str, dict[str, Any]] = {
    409: {"description": "another attempt owns the run now: stop and drop the job"}
}


def get_recorder(runtime: RuntimeDep) -> RunRecorder:
    return RunRecorder(runtime.sessions, runtime.bus, runtime.settings.region)


RecorderDep = Annotated[RunRecorder, Depends(get_recorder)]


def _attempt(runtime: Runtime, run_id: str, number: int) -> Attempt:
    return Attempt(job_of_run(runtime.sessions, run_id), number)


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
def start_attempt(
    run_id: RunId, body: AttemptIn, runtime: RuntimeDep, recorder: RecorderDep, _principal: OperatorPrincipal
) -> AttemptOut:
    """A worker took the run's job: a new attempt at it begins."""
    attempt = recorder.started(job_of_run(runtime.sessions, run_id), body.worker)
    if attempt is None:
        raise Conflict(f"run {run_id} is finished or cancelled; drop its job")
    return AttemptOut(number=attempt.number)


@router.get("/runs/{run_id}/attempts/{number}/cancel", response_model=CancelCheckOut, responses={404: {}})
def cancel_check(
    run_id: RunId, number: AttemptNumber, runtime: RuntimeDep, recorder: RecorderDep, _principal: OperatorPrincipal
) -> CancelCheckOut:
    return CancelCheckOut(cancel_requested=recorder.cancel_requested(_attempt(runtime, run_id, number)))


@router.post(
    "/runs/{run_id}/attempts/{number}/reports",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**UNREADABLE_BODY, 404: {"description": "no such run"}, **STALE},
)
def report(
    run_id: RunId,
    number: AttemptNumber,
    body: ReportIn,
    runtime: RuntimeDep,
    recorder: RecorderDep,
    _principal: OperatorPrincipal,
) -> Response:
    """Episodes, evaluation episodes and a checkpoint, recorded together once per ``seq``."""
    model = None
    if body.model is not None:
        runs_dir = (runtime.settings.artifacts / "runs" / run_id).resolve()
        path = runtime.settings.artifacts.joinpath(body.model.path).resolve()
        if not path.is_relative_to(runs_dir):
            raise InvalidField("model.path", f"must lie in the run's artifact directory {runs_dir}")
        model = ModelSaved(path=str(path), timesteps=body.model.timesteps)
    recorder.report(
        _attempt(runtime, run_id, number),
        Report(
            seq=body.seq,
            episodes=tuple(EpisodeFinished(**episode.model_dump()) for episode in body.episodes),
            evaluations=tuple(EvaluationFinished(**result.model_dump()) for result in body.evaluations),
            model=model,
        ),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/runs/{run_id}/attempts/{number}/end",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**UNREADABLE_BODY, 404: {"description": "no such run"}, **STALE},
)
def end_attempt(
    run_id: RunId,
    number: AttemptNumber,
    body: AttemptEndIn,
    runtime: RuntimeDep,
    recorder: RecorderDep,
    _principal: OperatorPrincipal,
) -> Response:
    """The attempt ended: the run finished (succeeded, failed, cancelled) or went back to the queue."""
    attempt = _attempt(runtime, run_id, number)
    if body.status == "queued":
        recorder.requeued(attempt)
    else:
        recorder.finished(attempt, RunStatus(body.status), body.error)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/workers/recover",
    response_model=RecoverOut,
    responses={**UNREADABLE_BODY, 409: {"description": "embedded mode: nothing to recover"}},
)
async def recover(body: RecoverIn, runtime: RuntimeDep, _principal: OperatorPrincipal) -> RecoverOut:
    """Queue again the runs of these families that the job queue lost (Redis restarted without its data)."""
    unknown = sorted(set(body.algorithms) - set(ALGORITHMS))
    if unknown:
        raise InvalidField("algorithms", f"unknown algorithm(s) {', '.join(unknown)}")
    if not isinstance(runtime.queue, RedisJobQueue):
        raise Conflict("embedded mode keeps its job queue in this process; it has nothing to recover")
    requeued = await run_in_threadpool(recover_lost_jobs, runtime.sessions, runtime.queue, body.algorithms)
    return RecoverOut(requeued=requeued)
