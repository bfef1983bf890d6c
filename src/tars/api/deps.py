"""Dependencies every route shares, named once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from tars.domain.users import Role
from tars.runtime import Runtime
from tars.services.auth import AuthenticationFailed, Principal

_bearer = HTTPBearer(auto_error=False, description="A token from POST /api/v1/auth/login")


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    with runtime.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_principal(
    runtime: RuntimeDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    try:
        return runtime.tokens.verify(credentials.credentials)
    except AuthenticationFailed as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


class RoleRequirement:
    """A route's declared permission: the least role that may call it (401 without credentials,
    403 with too little). Routes declare it through the principal they take."""

    def __init__(self, role: Role) -> None:
        self.role = role

    def __call__(self, principal: CurrentPrincipal) -> Principal:
        if not principal.role.allows(self.role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {self.role.value} role or higher")
        return principal


def public() -> None:
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
