"""What the audit log records: who did what, when, from where, and with what outcome."""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    LOGIN = "auth.login"
    LOGOUT = "auth.logout"
    REFRESH_REUSED = "auth.refresh_reused"
    API_KEY_CREATED = "apikey.created"
    API_KEY_REVOKED = "apikey.revoked"
    USER_CREATED = "user.created"
    ROLE_CHANGED = "user.role_changed"
    USER_DEACTIVATED = "user.deactivated"
    USER_REACTIVATED = "user.reactivated"
    TRAINING_STARTED = "training.started"
    EVALUATION_STARTED = "evaluation.started"
    TRAINING_CANCELLED = "training.cancelled"
    EVALUATION_DELETED = "evaluation.deleted"
    AGENT_DELETED = "agent.deleted"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
