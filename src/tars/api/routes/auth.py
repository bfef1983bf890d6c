from __future__ import annotations

import math

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from tars.api.deps import ClientAddress, Public, RuntimeDep, SessionDep, ViewerPrincipal
from tars.api.errors import UNREADABLE_BODY
from tars.api.ratelimit import RateLimits
from tars.api.schemas import LoginIn, LogoutIn, RefreshIn, TokenOut
from tars.domain.audit import AuditAction, Outcome
from tars.domain.users import Credential
from tars.services import audit, login_sessions
from tars.services.auth import AuthenticationFailed, authenticate
from tars.services.credentials import session_topic
from tars.services.runtime import Runtime
from tars.storage.database import transaction

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
async def login(
    body: LoginIn, session: SessionDep, runtime: RuntimeDep, request: Request, address: ClientAddress
) -> TokenOut:
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
        await run_in_threadpool(_record_failed_login, runtime, body.username, address)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), headers=UNAUTHORIZED) from exc
    with transaction(runtime.sessions) as writing:
        pair = login_sessions.start(writing, runtime.security.tokens, runtime.security.lifetimes, user, address)
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
        with transaction(runtime.sessions) as session:
            security = runtime.security
            refreshed = login_sessions.refresh(
                session, security.tokens, security.lifetimes, body.refresh_token, address
            )
    except AuthenticationFailed as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc), headers=UNAUTHORIZED) from exc
    if refreshed.revoked_session is not None:
        runtime.security.authenticator.forget(session_topic(refreshed.revoked_session))
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this refresh token was used before; the session is ended for safety, log in again",
            headers=UNAUTHORIZED,
        )
    assert refreshed.pair is not None
    return _token_out(refreshed.pair)


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
    with transaction(runtime.sessions) as session:
        session_id = principal.credential_id if principal.credential is Credential.TOKEN else None
        if body.refresh_token is not None:
            owner = login_sessions.session_of_refresh_token(session, body.refresh_token)
            if owner is None:
                raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid refresh token", headers=UNAUTHORIZED)
            session_id = owner
        if session_id is None:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "no session to end: API keys are revoked, not logged out"
            )
        login_sessions.end(session, principal, session_id)
    runtime.security.authenticator.forget(session_topic(session_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _record_failed_login(runtime: Runtime, username: str, address: str | None) -> None:
    with transaction(runtime.sessions) as session:
        audit.record(
            session, None, AuditAction.LOGIN, target=username[:64], outcome=Outcome.FAILURE, actor=username[:64],
            address=address,
        )  # fmt: skip


def _token_out(pair: login_sessions.TokenPair) -> TokenOut:
    return TokenOut(
        access_token=pair.access_token,
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token,
        refresh_expires_in=pair.refresh_expires_in,
    )
