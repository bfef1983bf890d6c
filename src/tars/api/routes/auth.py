from __future__ import annotations

import math

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool

from tars.api.deps import Public, RuntimeDep, SessionDep
from tars.api.ratelimit import RateLimits
from tars.api.schemas import LoginIn, TokenOut
from tars.services.auth import AuthenticationFailed, authenticate

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], dependencies=[Public])


@router.post("/login", response_model=TokenOut, responses={429: {"description": "too many failed logins"}})
async def login(body: LoginIn, session: SessionDep, runtime: RuntimeDep, request: Request) -> TokenOut:
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
        user = await run_in_threadpool(authenticate, session, body.username, body.password)
    except AuthenticationFailed as exc:
        if limits is not None:
            await limits.count("login-failure", failures)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc
    issued = runtime.tokens.issue(user)
    return TokenOut(access_token=issued.access_token, expires_in=issued.expires_in)
