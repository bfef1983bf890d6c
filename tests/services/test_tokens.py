"""Bearer tokens under attack: each forgery, replay past expiry or misdirected token is refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import time_machine

from tars.domain.users import Role
from tars.services.auth import AuthenticationFailed
from tars.services.auth.tokens import AUDIENCE, ISSUER, TokenService
from tars.storage.tables import UserRow
from tars.wiring.keys import jwt_keys
from tests.conftest import make_settings

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


def pem_pair(private: Any) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization

    return (
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    )


def key_pair(algorithm: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ed25519.Ed25519PrivateKey.generate()


@pytest.mark.parametrize("algorithm", ["RS256", "EdDSA"])
def test_key_pair_tokens_are_accepted_and_forgeries_refused(algorithm: str, tmp_path: Path) -> None:
    private_pem, public_pem = pem_pair(key_pair(algorithm))
    (tmp_path / "jwt.pem").write_bytes(private_pem)
    settings = make_settings(tmp_path, jwt_algorithm=algorithm, jwt_private_key_file=tmp_path / "jwt.pem")
    signing, verifying = jwt_keys(settings)
    tokens = TokenService(signing, 900, algorithm=algorithm, verifying_key=verifying)
    issued = tokens.issue(user(Role.ADMIN)).access_token
    assert jwt.get_unverified_header(issued)["alg"] == algorithm
    assert tokens.verify(issued).role is Role.ADMIN
    # A replica holding only the public key verifies too.
    (tmp_path / "jwt.pub").write_bytes(public_pem)
    verifier_settings = make_settings(
        tmp_path,
        jwt_algorithm=algorithm,
        jwt_private_key_file=tmp_path / "jwt.pem",
        jwt_public_key_file=tmp_path / "jwt.pub",
    )
    verifier = TokenService(None, 900, algorithm=algorithm, verifying_key=jwt_keys(verifier_settings)[1])
    assert verifier.verify(issued).user_id == 7
    other_private, _ = pem_pair(key_pair(algorithm))
    forgeries = {
        "another key pair": jwt.encode(claims(), serialization_key(other_private), algorithm=algorithm),
        # The classic confusion: HS256 "signed" with the public key, which everybody has.
        "HS256 with the public key": hmac_signed_with(public_pem),
        "alg none": unsigned(claims(role="admin")),
        "HS256 with a secret": jwt.encode(claims(), SECRET, algorithm="HS256"),
    }
    for name, forged in forgeries.items():
        with pytest.raises(AuthenticationFailed):
            tokens.verify(forged)
        assert name


def serialization_key(pem: bytes) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(pem, password=None)


def hmac_signed_with(secret: bytes) -> str:
    import hashlib
    import hmac

    header = encode_segment({"alg": "HS256", "typ": "JWT"})
    payload = encode_segment({k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in claims().items()})
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"


def test_settings_refuse_a_key_pair_that_does_not_fit(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs jwt_private_key_file"):
        make_settings(tmp_path, jwt_algorithm="RS256")
    ed_pem, _ = pem_pair(key_pair("EdDSA"))
    (tmp_path / "ed.pem").write_bytes(ed_pem)
    with pytest.raises(ValueError, match="RS256 needs an RSA key pair"):
        jwt_keys(make_settings(tmp_path, jwt_algorithm="RS256", jwt_private_key_file=tmp_path / "ed.pem"))
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(ValueError, match="cannot load the JWT key pair"):
        jwt_keys(make_settings(tmp_path, jwt_algorithm="EdDSA", jwt_private_key_file=tmp_path / "junk.pem"))


def test_a_token_checked_before_is_refused_once_it_expires() -> None:
    """Verified tokens are remembered (the signature is checked once), but never past their expiry."""
    tokens = TokenService(SECRET, expires_seconds=1)
    token = jwt.encode(claims(exp=datetime.now(UTC) + timedelta(seconds=1)), SECRET, algorithm="HS256")
    assert tokens.verify(token).user_id == 7
    assert tokens.verify(token).user_id == 7  # from memory
    # A clock moved past the expiry: PyJWT and the memory of verified tokens both read time.time().
    with (
        time_machine.travel(datetime.now(UTC) + timedelta(seconds=1.1)),
        pytest.raises(AuthenticationFailed, match="invalid or expired"),
    ):
        tokens.verify(token)


def test_a_remembered_token_does_not_vouch_for_a_tampered_one() -> None:
    tokens = TokenService(SECRET, expires_seconds=60)
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    tokens.verify(token)
    header, payload, signature = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged["role"] = "admin"
    tampered = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    with pytest.raises(AuthenticationFailed):
        tokens.verify(f"{header}.{tampered}.{signature}")
