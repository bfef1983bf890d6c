from __future__ import annotations

import math

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from tars.api.deps import ClientAddress, Public, RuntimeDep, ViewerPrincipal
from tars.api.errors import UNREADABLE_BODY
from tars.api.ratelimit import RateLimits
from tars.api.schemas import LoginIn, LogoutIn, RefreshIn, TokenOut
from tars.services.auth import AuthenticationFailed
from tars.services.auth.sessions import TokenPair

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


@router.post(
    "/login",
    response_model=TokenOut,
    dependencies=[Public],
    responses={
        **UNREADABLE_BODY,
        401: {"description": "wrong username or password"},
        429: {"description": "too many failed logins"},
    },
)
async def login(body: LoginIn, runtime: RuntimeDep, request: Request, address: ClientAddress) -> TokenOut:
    limits: RateLimits | None = request.app.state.rate_limits
    failures = f"user:{body.username.lower()}"
    if limits is not None and (wait := await limits.wait_needed("login-failure", failures)) > 0:
        # The same answer whether or not the user exists: it names no account, only the attempts.
        retry_after = str(max(1, math.ceil(wait)))
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed logins for this username; retry in {retry_after} s",
            headers={"Retry-After": retry_after},
        )
    try:
        pair = await run_in_threadpool(runtime.security.logins.log_in, body.username, body.password, address)
    except AuthenticationFailed as exc:
        if limits is not None:
            await limits.count("login-failure", failures)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), headers=UNAUTHORIZED) from exc
    return _token_out(pair)


@router.post(
    "/refresh",
    response_model=TokenOut,
    dependencies=[Public],
    responses={**UNREADABLE_BODY, 401: {"description": "unknown, expired, reused or revoked refresh token"}},
)
def refresh(body: RefreshIn, runtime: RuntimeDep, address: ClientAddress) -> TokenOut:
    """Exchange a refresh token for a new pair. Each refresh token works once: presenting one again
    ends its whole session."""
    try:
        pair = runtime.security.logins.refresh(body.refresh_token, address)
    except AuthenticationFailed as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), headers=UNAUTHORIZED) from exc
    return _token_out(pair)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **UNREADABLE_BODY,
        401: {"description": "not authenticated"},
        422: {"description": "nothing identifies a session"},
    },
)
def logout(body: LogoutIn, principal: ViewerPrincipal, runtime: RuntimeDep) -> Response:
    """End a login session: its refresh tokens and its access tokens stop working on every replica."""
    try:
        runtime.security.logins.log_out(principal, body.refresh_token)
    except AuthenticationFailed as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), headers=UNAUTHORIZED) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _token_out(pair: TokenPair) -> TokenOut:
    return TokenOut(
        access_token=pair.access_token,
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token,
        refresh_expires_in=pair.refresh_expires_in,
    )
