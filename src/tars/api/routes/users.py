from __future__ import annotations

from fastapi import APIRouter, status

from tars.api.deps import AdminPrincipal, RuntimeDep, SessionDep
from tars.api.errors import UNREADABLE_BODY
from tars.api.schemas import RowId, UserIn, UserListOut, UserOut, UserPatch
from tars.domain.errors import InvalidField
from tars.domain.users import Role
from tars.services.auth import create_user, update_user
from tars.services.credentials import user_topic
from tars.storage import users
from tars.storage.database import transaction

router = APIRouter(prefix="/api/v1/users", tags=["users"])


@router.get("", response_model=UserListOut)
def list_users(session: SessionDep, _principal: AdminPrincipal) -> UserListOut:
    return UserListOut(items=[UserOut.model_validate(row) for row in users.list_users(session)])


@router.post(
    "",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    responses={**UNREADABLE_BODY, 409: {"description": "taken"}},
)
def add_user(body: UserIn, runtime: RuntimeDep, principal: AdminPrincipal) -> UserOut:
    with transaction(runtime.sessions) as session:
        row = create_user(session, body.username, body.password, Role(body.role), by=principal)
    return UserOut.model_validate(row)


@router.patch(
    "/{user_id}",
    response_model=UserOut,
    responses={
        **UNREADABLE_BODY,
        404: {"description": "no such user"},
        409: {"description": "an admin changing themself"},
    },
)
def change_user(user_id: RowId, body: UserPatch, runtime: RuntimeDep, principal: AdminPrincipal) -> UserOut:
    """Change a user's role or deactivate them; their tokens and keys follow at once, everywhere."""
    if body.role is None and body.active is None:
        raise InvalidField("role", "give role, active or both")
    with transaction(runtime.sessions) as session:
        row = update_user(session, principal, user_id, role=Role(body.role) if body.role else None, active=body.active)
    runtime.security.authenticator.forget(user_topic(user_id))
    return UserOut.model_validate(row)
