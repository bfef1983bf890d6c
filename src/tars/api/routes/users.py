from __future__ import annotations

from fastapi import APIRouter, status

from tars.api.deps import AdminPrincipal, RuntimeDep
from tars.api.errors import UNREADABLE_BODY
from tars.api.schemas import RowId, UserIn, UserListOut, UserOut, UserPatch
from tars.domain.users import Role, User

router = APIRouter(prefix="/api/v1/users", tags=["users"])


@router.get("", response_model=UserListOut)
def list_users(runtime: RuntimeDep, _principal: AdminPrincipal) -> UserListOut:
    return UserListOut(items=runtime.security.accounts.users.list())


@router.post(
    "",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    responses={**UNREADABLE_BODY, 409: {"description": "taken"}},
)
def add_user(body: UserIn, runtime: RuntimeDep, principal: AdminPrincipal) -> User:
    return runtime.security.accounts.users.create(body.username, body.password, Role(body.role), by=principal)


@router.patch(
    "/{user_id}",
    response_model=UserOut,
    responses={
        **UNREADABLE_BODY,
        404: {"description": "no such user"},
        409: {"description": "an admin changing themself"},
    },
)
def change_user(user_id: RowId, body: UserPatch, runtime: RuntimeDep, principal: AdminPrincipal) -> User:
    """Change a user's role or deactivate them; their tokens and keys follow at once, everywhere."""
    role = Role(body.role) if body.role else None
    return runtime.security.accounts.users.update(principal, user_id, role=role, active=body.active)
