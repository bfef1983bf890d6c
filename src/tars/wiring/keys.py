"""The keys access tokens are signed and checked with, from the settings: a configured secret or key
pair, or a secret generated once and kept in the data directory."""

from __future__ import annotations

import os
import secrets
from typing import Any

from tars.settings import Settings, check_secret

JWT_SECRET_FILE = "jwt_secret"


def jwt_signing_secret(settings: Settings) -> str:
    """The configured secret, or one generated once and kept in the data directory."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    path = settings.data_dir / JWT_SECRET_FILE
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes starting together must not each write their own secret.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    secret = path.read_text().strip()
    check_secret(secret)
    return secret


def jwt_keys(settings: Settings) -> tuple[Any, Any]:
    """(signing key, verifying key) for the settings' jwt_algorithm."""
    if settings.jwt_algorithm == "HS256":
        secret = jwt_signing_secret(settings)
        return secret, secret
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    assert settings.jwt_private_key_file is not None  # the settings' validator requires it
    try:
        private = serialization.load_pem_private_key(settings.jwt_private_key_file.read_bytes(), password=None)
        public = (
            serialization.load_pem_public_key(settings.jwt_public_key_file.read_bytes())
            if settings.jwt_public_key_file
            else private.public_key()
        )
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"cannot load the JWT key pair: {exc}") from exc
    if settings.jwt_algorithm == "RS256":
        if not isinstance(private, rsa.RSAPrivateKey) or not isinstance(public, rsa.RSAPublicKey):
            raise ValueError("RS256 needs an RSA key pair")
        if private.key_size < 2048:
            raise ValueError("RS256 needs an RSA key of at least 2048 bits")
    elif not isinstance(private, ed25519.Ed25519PrivateKey) or not isinstance(public, ed25519.Ed25519PublicKey):
        raise ValueError("EdDSA needs an Ed25519 key pair")
    return private, public
