"""What the audit log records: who did what, when, from where, and with what outcome."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


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
    INSIGHT_ACKNOWLEDGED = "insight.acknowledged"
    INSIGHT_DISMISSED = "insight.dismissed"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True)
class AuditEvent:
    id: int
    created_at: datetime
    actor: str
    actor_user_id: int | None
    credential: str | None
    credential_id: str | None
    address: str | None
    action: str
    target: str | None
    outcome: str
    details: dict[str, Any] | None


@dataclass(frozen=True)
class AuditFilter:
    action: AuditAction | None = None
    actor: str | None = None
    outcome: Outcome | None = None
    since: datetime | None = None
    until: datetime | None = None
