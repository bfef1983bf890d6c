"""One HTTP status for each kind of domain error, with a body that names what is wrong."""

from __future__ import annotations

from typing import Any

import psycopg.errors
from fastapi import FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from tars.api.problems import ProblemResponse
from tars.domain.errors import Conflict, IdempotencyKeyReused, InvalidField, InvalidFields, NotFound, Unavailable
from tars.domain.runs import StaleAttempt

# FastAPI refuses a body it cannot even decode (bytes that are not UTF-8) with 400, before any validation:
# each route that reads a body says so.
UNREADABLE_BODY: dict[int | str, dict[str, Any]] = {400: {"description": "the body is not UTF-8 text"}}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> ProblemResponse:
        # FastAPI's own handler, but one that can echo any input (NaN, a lone surrogate) back.
        return ProblemResponse({"detail": exc.errors()}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        # As FastAPI's, but a detail that quotes the request (a path, a name) always renders.
        if exc.status_code in (status.HTTP_204_NO_CONTENT, status.HTTP_304_NOT_MODIFIED):
            return Response(status_code=exc.status_code, headers=exc.headers)
        return ProblemResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, exc: NotFound) -> ProblemResponse:
        return ProblemResponse({"detail": str(exc)}, status_code=status.HTTP_404_NOT_FOUND)

    @app.exception_handler(InvalidField)
    async def invalid_field(_request: Request, exc: InvalidField) -> ProblemResponse:
        # The same shape FastAPI uses for schema errors, so clients parse one format.
        body = {"detail": [{"loc": _location(exc), "msg": exc.message, "type": "value_error"}]}
        return ProblemResponse(body, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(InvalidFields)
    async def invalid_fields(_request: Request, exc: InvalidFields) -> ProblemResponse:
        body = {
            "detail": [
                {"loc": _location(problem), "msg": problem.message, "type": "value_error"} for problem in exc.problems
            ]
        }
        return ProblemResponse(body, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(IdempotencyKeyReused)
    async def idempotency_key_reused(_request: Request, exc: IdempotencyKeyReused) -> ProblemResponse:
        body = {"detail": [{"loc": ["header", "Idempotency-Key"], "msg": str(exc), "type": "value_error"}]}
        return ProblemResponse(body, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(Conflict)
    @app.exception_handler(StaleAttempt)  # a worker's attempt another one has taken over
    async def conflict(_request: Request, exc: Conflict | StaleAttempt) -> ProblemResponse:
        return ProblemResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)

    @app.exception_handler(Unavailable)
    async def unavailable(_request: Request, exc: Unavailable) -> ProblemResponse:
        return ProblemResponse({"detail": str(exc)}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    @app.exception_handler(DataError)
    async def unstorable_value(_request: Request, exc: DataError) -> ProblemResponse:
        # A value the schema let through but the database cannot hold or compare: a NUL character in
        # text on PostgreSQL, say. The client's input, so a 422 in the shape of every other (which
        # field is not known here), not a 500.
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
        problem = {"loc": ["request"], "msg": f"a value cannot be stored or compared: {reason}", "type": "value_error"}
        return ProblemResponse({"detail": [problem]}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(OperationalError)
    async def database_down(_request: Request, exc: OperationalError) -> ProblemResponse:
        if isinstance(exc.orig, psycopg.errors.QueryCanceled):
            detail = "the database took too long to answer (statement timeout); try a narrower query or again shortly"
        else:
            detail = "the database is unavailable; try again shortly"
        return ProblemResponse(
            {"detail": detail}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "5"}
        )

    @app.exception_handler(PoolTimeout)
    async def pool_exhausted(_request: Request, _exc: PoolTimeout) -> ProblemResponse:
        return ProblemResponse(
            {"detail": "every database connection is busy; try again shortly"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )


def _location(problem: InvalidField) -> list[str | int]:
    """As FastAPI writes it: ["body", "items", 2, "agent_id"] (list positions as numbers)."""
    return [problem.location, *(int(part) if part.isdigit() else part for part in problem.field.split("."))]
