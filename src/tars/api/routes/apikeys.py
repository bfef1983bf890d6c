from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from tars.api.deps import AdminPrincipal, RuntimeDep, SessionDep
from tars.api.errors import UNREADABLE_BODY
from tars.api.schemas import ApiKeyCreatedOut, ApiKeyIn, ApiKeyListOut, ApiKeyOut, RowId
from tars.domain.users import Role
from tars.services import apikeys
from tars.services.credentials import key_topic
from tars.storage import apikeys as apikey_rows
from tars.storage import users
from tars.storage.database import transaction
from tars.storage.tables import ApiKeyRow

router = APIRouter(prefix="/api/v1/apikeys", tags=["api keys"])


@router.post(
    "",
    response_model=ApiKeyCreatedOut,
    status_code=status.HTTP_201_CREATED,
    responses={**UNREADABLE_BODY, 422: {"description": "unknown user, a role above the user's, or a bad expiry"}},
)
def create_api_key(body: ApiKeyIn, runtime: RuntimeDep, principal: AdminPrincipal) -> ApiKeyCreatedOut:
    """Create a key for a machine acting as ``user`` with ``role``. The key is in this response only."""
    lifetime = apikeys.parse_lifetime(body.expires_in) if body.expires_in else None
    with transaction(runtime.sessions) as session:
        created = apikeys.create_key(
            session, principal, username=body.user, role=Role(body.role), name=body.name, lifetime=lifetime
        )
    return ApiKeyCreatedOut(**key_out(created.row).model_dump(), key=created.key)


@router.get("", response_model=ApiKeyListOut)
def list_api_keys(
    session: SessionDep,
    _principal: AdminPrincipal,
    user: Annotated[str | None, Query(max_length=64, description="Only this user's keys")] = None,
    include_revoked: bool = False,
) -> ApiKeyListOut:
    user_id = None
    if user is not None:
        owner = users.get_user_by_username(session, user)
        if owner is None:
            return ApiKeyListOut(items=[])
        user_id = owner.id
    rows = apikey_rows.list_keys(session, user_id=user_id, include_revoked=include_revoked)
    return ApiKeyListOut(items=[key_out(row) for row in rows])


@router.delete(
    "/{key_id}",
    response_model=ApiKeyOut,
    responses={404: {"description": "no such key"}, 409: {"description": "already revoked"}},
)
def revoke_api_key(key_id: RowId, runtime: RuntimeDep, principal: AdminPrincipal) -> ApiKeyOut:
    """Revoke a key: every replica refuses it from the moment this returns."""
    with transaction(runtime.sessions) as session:
        row = apikeys.revoke_key(session, principal, key_id)
    runtime.security.authenticator.forget(key_topic(row.key_prefix))
    return key_out(row)


def key_out(row: ApiKeyRow) -> ApiKeyOut:
    return ApiKeyOut(
        id=row.id,
        prefix=row.key_prefix,
        user_id=row.user_id,
        name=row.name,
        role=row.role,
        active=row.active,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )
