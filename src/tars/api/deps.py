"""Dependencies every route shares, named once."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.dependencies.models import Dependant
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from tars.domain.users import Principal, Role
from tars.services.auth import AuthenticationFailed
from tars.services.auth.credentials import Authenticator
from tars.services.runtime import Runtime

_bearer = HTTPBearer(
    auto_error=False, description="An access token from POST /api/v1/auth/login, or an API key (tars_...)"
)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (tars_...)")


# Dependencies that do no blocking work are async: FastAPI runs a plain `def` dependency in the thread
# pool, and a hop there and back for each would cost more than the whole database query.


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


ClientAddress = Annotated[str | None, Depends(client_address)]


def presented_credential(request: Request) -> str | None:
    """The bearer credential of a request (Authorization: Bearer, or X-API-Key), if any."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None
    return request.headers.get("x-api-key") or None


async def authenticate_off_loop(authenticator: Authenticator, credential: str) -> Principal:
    """The principal of ``credential`` from memory when the cache can answer; a cold credential
    needs the database, which is asked from the thread pool, never on the event loop."""
    principal = authenticator.cached(credential)
    if principal is None:
        principal = await run_in_threadpool(authenticator.authenticate, credential)
    return principal


async def authenticated_principal(request: Request) -> Principal:
    """Who is calling (401 when nobody, or a credential that fails): the principal the rate limiter
    found already, else the presented credential's."""
    address = request.client.host if request.client else None
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:
        return known.at(address)
    credential = presented_credential(request)
    if credential is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing credentials: send Authorization: Bearer <token or API key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    runtime: Runtime = request.app.state.runtime
    try:
        return (await authenticate_off_loop(runtime.security.authenticator, credential)).at(address)
    except AuthenticationFailed as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc


async def get_principal(
    request: Request,
    # Declared for the OpenAPI document (the credentials a route accepts); read by the function above.
    _bearer_credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    return await authenticated_principal(request)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


class RoleRequirement:
    """A route's declared permission: the least role that may call it (401 without credentials,
    403 with too little). Routes declare it through the principal they take."""

    def __init__(self, role: Role) -> None:
        self.role = role

    async def __call__(self, principal: CurrentPrincipal) -> Principal:
        if not principal.role.allows(self.role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {self.role.value} role or higher")
        return principal


async def public() -> None:
    """The other declaration: anyone may call the route (health, metrics, login, the page), or it
    authenticates by its own protocol (the WebSocket)."""


Public = Depends(public)
ViewerPrincipal = Annotated[Principal, Depends(RoleRequirement(Role.VIEWER))]
OperatorPrincipal = Annotated[Principal, Depends(RoleRequirement(Role.OPERATOR))]
AdminPrincipal = Annotated[Principal, Depends(RoleRequirement(Role.ADMIN))]


def declared_access(dependant: Dependant) -> Role | Literal["public"] | None:
    """What a route declares through its dependencies: a role, "public", or nothing at all."""
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, RoleRequirement):
            return dependency.call.role
        if dependency.call is public:
            return "public"
        found = declared_access(dependency)
        if found is not None:
            return found
    return None
