from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, status

from tars.api.deps import AdminPrincipal, RuntimeDep
from tars.api.errors import UNREADABLE_BODY
from tars.api.schemas import ApiKeyCreatedOut, ApiKeyIn, ApiKeyListOut, ApiKeyOut, RowId
from tars.domain.users import ApiKey, Role

router = APIRouter(prefix="/api/v1/apikeys", tags=["api keys"])


@router.post(
    "",
    response_model=ApiKeyCreatedOut,
    status_code=status.HTTP_201_CREATED,
    responses={**UNREADABLE_BODY, 422: {"description": "unknown user, a role above the user's, or a bad expiry"}},
)
def create_api_key(body: ApiKeyIn, runtime: RuntimeDep, principal: AdminPrincipal) -> ApiKeyCreatedOut:
    """Create a key for a machine acting as ``user`` with ``role``. The key is in this response only."""
    created = runtime.security.accounts.api_keys.create(
        principal, username=body.user, role=Role(body.role), name=body.name, expires_in=body.expires_in
    )
    return ApiKeyCreatedOut(**asdict(created.record), key=created.key)


@router.get("", response_model=ApiKeyListOut)
def list_api_keys(
    runtime: RuntimeDep,
    _principal: AdminPrincipal,
    user: Annotated[str | None, Query(max_length=64, description="Only this user's keys")] = None,
    include_revoked: bool = False,
) -> ApiKeyListOut:
    keys = runtime.security.accounts.api_keys.list(username=user, include_revoked=include_revoked)
    return ApiKeyListOut(items=keys)


@router.delete(
    "/{key_id}",
    response_model=ApiKeyOut,
    responses={404: {"description": "no such key"}, 409: {"description": "already revoked"}},
)
def revoke_api_key(key_id: RowId, runtime: RuntimeDep, principal: AdminPrincipal) -> ApiKey:
    """Revoke a key: every replica refuses it from the moment this returns."""
    return runtime.security.accounts.api_keys.revoke(principal, key_id)
