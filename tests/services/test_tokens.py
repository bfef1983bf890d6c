"""Bearer tokens under attack: each forgery, replay past expiry or misdirected token is refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from tars.domain.users import Role
from tars.services.auth import AUDIENCE, ISSUER, AuthenticationFailed, TokenService
from tars.storage.tables import UserRow

SECRET = "s" * 64  # long enough for HS512 too, so that forgery is refused for its algorithm
TOKENS = TokenService(SECRET, expires_seconds=900)


def user(role: Role = Role.VIEWER) -> UserRow:
    return UserRow(id=7, username="vera", password_hash="-", role=role.value, active=True)


def claims(**changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    base = {
        "sub": "7",
        "name": "vera",
        "role": "viewer",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def signed(key: str = SECRET, algorithm: str = "HS256", **changes: Any) -> str:
    return jwt.encode(claims(**changes), key, algorithm=algorithm)


def encode_segment(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, default=str).encode()).decode().rstrip("=")


def test_a_token_it_issued_is_accepted() -> None:
    principal = TOKENS.verify(TOKENS.issue(user(Role.OPERATOR)).access_token)
    assert (principal.user_id, principal.username, principal.role) == (7, "vera", Role.OPERATOR)


def unsigned(payload: dict[str, Any]) -> str:
    header = encode_segment({"alg": "none", "typ": "JWT"})
    body = encode_segment({k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in payload.items()})
    return f"{header}.{body}."


def tampered() -> str:
    header, _payload, signature = TOKENS.issue(user()).access_token.split(".")
    now = int(datetime.now(UTC).timestamp())
    forged = {"sub": "7", "name": "vera", "role": "admin", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now}
    return f"{header}.{encode_segment(forged | {'exp': now + 300})}.{signature}"


FORGERIES = {
    "alg none": lambda: unsigned(claims(role="admin")),
    "wrong key": lambda: jwt.encode(claims(), "k" * 48, algorithm="HS256"),
    "other HMAC algorithm": lambda: jwt.encode(claims(), SECRET, algorithm="HS512"),
    "expired": lambda: jwt.encode(claims(exp=datetime.now(UTC) - timedelta(seconds=1)), SECRET, algorithm="HS256"),
    "not yet valid": lambda: jwt.encode(
        claims(nbf=datetime.now(UTC) + timedelta(minutes=1)), SECRET, algorithm="HS256"
    ),
    "tampered payload": tampered,
    "wrong audience": lambda: jwt.encode(claims(aud="someone-else"), SECRET, algorithm="HS256"),
    "wrong issuer": lambda: jwt.encode(claims(iss="evil"), SECRET, algorithm="HS256"),
    "no expiry": lambda: jwt.encode(claims(exp=None), SECRET, algorithm="HS256"),
    "no audience": lambda: jwt.encode(claims(aud=None), SECRET, algorithm="HS256"),
    "unknown role": lambda: jwt.encode(claims(role="root"), SECRET, algorithm="HS256"),
    "not a token": lambda: "not.a.token",
}


@pytest.mark.parametrize("forgery", FORGERIES.values(), ids=FORGERIES.keys())
def test_forged_or_misdirected_tokens_are_refused(forgery: Any) -> None:
    with pytest.raises(AuthenticationFailed):
        TOKENS.verify(forgery())


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
@pytest.mark.parametrize("forgery", ["alg none", "tampered payload", "expired"])
def test_the_api_answers_401_to_a_forged_token(backend: str, dashboard: Any, forgery: str) -> None:
    response = dashboard.get("/api/v1/runs", headers={"Authorization": f"Bearer {FORGERIES[forgery]()}"})
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid or expired token"
