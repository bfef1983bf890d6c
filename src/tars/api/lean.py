"""A route served without FastAPI's per-request machinery, for the calls clients make most.

FastAPI resolves dependencies, validates parameters one by one and wraps each response for every
request; for `GET /api/v1/evaluations` that cost more than the database read, and for a single
`POST /api/v1/evaluations` several times the insert. A `LeanRoute` is an ordinary `APIRoute` —
documented, access-declared and matched like the others, its endpoint the one implementation — whose
request handling is reduced to what the endpoint needs: the principal its declared role requires (as
`RoleRequirement` checks it), its input validated in one pass by the endpoint's own model (the query,
or the JSON body straight from its bytes), any headers it declares, with errors located and worded
as FastAPI's, and the endpoint's response. Errors propagate to the application's handlers like any
route's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import HTTPException, status
from fastapi.dependencies.utils import request_params_to_args
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tars.api.bodies import read_json_body
from tars.api.deps import authenticated_principal, declared_access
from tars.domain.users import Role

# The endpoint a lean route calls: the request, its validated query or body, the caller, and the
# headers it declares by name.
LeanEndpoint = Callable[..., Awaitable[Response]]
Parse = Callable[[Request], Awaitable[BaseModel]]


class LeanRoute(APIRoute):
    """An APIRoute whose endpoint takes ``(request, input, principal, **headers)``: the input one
    pydantic model, either the query (annotated ``Annotated[Model, Query()]``, so FastAPI documents
    each field) or the JSON body; the principal one of the role-requiring principals of
    `tars.api.deps`; headers as ``Header()`` parameters."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        role = declared_access(self.dependant)
        if not isinstance(role, Role):
            raise TypeError(f"a lean route declares the role it needs; {path} declares {role!r}")
        params = [*self.dependant.query_params, *self.dependant.body_params]
        if len(params) != 1:
            raise TypeError(f"a lean route takes one model, its query or its body; {path} takes {len(params)}")
        model = params[0].field_info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"a lean route takes its query or body as one pydantic model; {path} does not")
        parse = _query_parser(model) if self.dependant.query_params else _body_parser(model)
        self.app = _serve(endpoint, parse, role, self.dependant.header_params)


def _serve(
    endpoint: LeanEndpoint, parse: Parse, role: Role, header_params: list[Any]
) -> Callable[..., Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        principal = await authenticated_principal(request)
        if not principal.role.allows(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {role.value} role or higher")
        headers, errors = request_params_to_args(header_params, request.headers)
        if errors:
            raise RequestValidationError(errors)
        response = await endpoint(request, await parse(request), principal, **headers)
        await response(scope, receive, send)

    return app


def _query_parser(model: type[BaseModel]) -> Parse:
    async def parse(request: Request) -> BaseModel:
        try:
            return model.model_validate(request.query_params)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**error, "loc": ("query", *error["loc"])} for error in exc.errors(include_url=False)]
            ) from None

    return parse


def _body_parser(model: type[BaseModel]) -> Parse:
    async def parse(request: Request) -> BaseModel:
        return await read_json_body(request, model)

    return parse
