"""A route served without FastAPI's per-request machinery, for the read clients poll most.

FastAPI resolves dependencies, validates parameters one by one and wraps each response for every
request; for `GET /api/v1/evaluations` that cost more than the database read. A `LeanRoute` is an
ordinary `APIRoute` — documented, access-declared and matched like the others, its endpoint the one
implementation — whose request handling is reduced to what the endpoint needs: the principal its
declared role requires (as `RoleRequirement` checks it), the query validated in one pass by the
endpoint's own query model (errors located and worded as FastAPI's), and the endpoint's response.
Errors propagate to the application's handlers like any route's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tars.api.deps import authenticated_principal, declared_access
from tars.domain.users import Principal, Role

# The endpoint a lean route calls: the request, its validated query and the caller.
LeanEndpoint = Callable[[Request, Any, Principal], Awaitable[Response]]


class LeanRoute(APIRoute):
    """An APIRoute whose endpoint takes ``(request, query, principal)``: the query a pydantic model
    (annotated ``Annotated[Model, Query()]``, so FastAPI documents each field), the principal one
    of the role-requiring principals of `tars.api.deps`."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        role = declared_access(self.dependant)
        if not isinstance(role, Role):
            raise TypeError(f"a lean route declares the role it needs; {path} declares {role!r}")
        [query_param] = self.dependant.query_params
        query_model = query_param.field_info.annotation
        if not (isinstance(query_model, type) and issubclass(query_model, BaseModel)):
            raise TypeError(f"a lean route takes its query as one pydantic model; {path} does not")
        self.app = _serve(endpoint, query_model, role)


def _serve(endpoint: LeanEndpoint, query_model: type[BaseModel], role: Role) -> Callable[..., Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        principal = await authenticated_principal(request)
        if not principal.role.allows(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {role.value} role or higher")
        response = await endpoint(request, _query(query_model, request), principal)
        await response(scope, receive, send)

    return app


def _query(model: type[BaseModel], request: Request) -> BaseModel:
    try:
        return model.model_validate(request.query_params)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("query", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None
