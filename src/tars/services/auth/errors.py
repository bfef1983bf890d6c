from __future__ import annotations


class AuthenticationFailed(Exception):
    """Credentials or a token could not be accepted; the message is safe to show."""
