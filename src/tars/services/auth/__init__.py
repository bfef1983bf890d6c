"""Who may do what: users and their passwords, access tokens, login sessions, API keys, the
per-process credential cache and the invalidations that keep every replica's cache honest.

Each module is one concept; nothing here is imported by a worker (the JWT, argon2 and cryptography
stack would cost each worker process about 11 MB), so this file imports none of them.
"""

from tars.services.auth.errors import AuthenticationFailed

__all__ = ["AuthenticationFailed"]
