"""Failed logins are throttled per username, whoever tries, without telling which usernames exist."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tars.settings import Settings
from tests.conftest import PASSWORD


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"rate_limit_login": "100/minute", "rate_limit_login_failures": "3/minute"})


def login(client: TestClient, username: str, password: str) -> int:
    return client.post("/api/v1/auth/login", json={"username": username, "password": password}).status_code


def test_a_username_is_locked_after_its_failed_logins_even_for_the_right_password(
    dashboard: TestClient, users: dict[str, str]
) -> None:
    target = users["admin"]
    assert [login(dashboard, target, "guess-number-x") for _ in range(3)] == [401, 401, 401]
    response = dashboard.post("/api/v1/auth/login", json={"username": target, "password": PASSWORD})
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    # Other users are not affected; successful logins never count.
    assert [login(dashboard, users["viewer"], PASSWORD) for _ in range(5)] == [200] * 5


def test_unknown_and_known_usernames_are_throttled_alike(dashboard: TestClient, users: dict[str, str]) -> None:
    known = [login(dashboard, users["operator"], "wrong-password") for _ in range(4)]
    unknown = [login(dashboard, "nobody-here", "wrong-password") for _ in range(4)]
    assert known == unknown == [401, 401, 401, 429]
    known_text = dashboard.post("/api/v1/auth/login", json={"username": users["operator"], "password": "x"}).json()
    unknown_text = dashboard.post("/api/v1/auth/login", json={"username": "nobody-here", "password": "x"}).json()
    # Alike but for the seconds left, which count from each name's first failure, not its existence.
    assert re.sub(r"\d+ s", "N s", known_text["detail"]) == re.sub(r"\d+ s", "N s", unknown_text["detail"])
