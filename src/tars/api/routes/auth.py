from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from tars.api.deps import Public, RuntimeDep, SessionDep
from tars.api.schemas import LoginIn, TokenOut
from tars.services.auth import AuthenticationFailed, authenticate

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], dependencies=[Public])


@router.post("/login", response_model=TokenOut)
def login(body: LoginIn, session: SessionDep, runtime: RuntimeDep) -> TokenOut:
    try:
        user = authenticate(session, body.username, body.password)
    except AuthenticationFailed as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc
    issued = runtime.tokens.issue(user)
    return TokenOut(access_token=issued.access_token, expires_in=issued.expires_in)
