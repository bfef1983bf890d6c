from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from tars.settings import Settings
from tars.wiring.keys import jwt_signing_secret


def test_defaults_are_embedded_on_sqlite(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.embedded
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path / 'tars.db'}"
    assert (settings.region, settings.dashboard_port, settings.orchestration_port) == ("us-west-2", 3001, 8094)


def test_environment_variables_configure_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TARS_DATABASE_URL", "postgresql://tars@db/tars")
    monkeypatch.setenv("TARS_REDIS_URL", "redis://cache:6379/0")
    monkeypatch.setenv("TARS_REGION", "eu-west-1")
    monkeypatch.setenv("TARS_DASHBOARD_PORT", "4001")
    settings = Settings()
    assert not settings.embedded
    assert settings.sqlalchemy_url == "postgresql+psycopg://tars@db/tars"
    assert (settings.region, settings.dashboard_port) == ("eu-west-1", 4001)


def test_the_jwt_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    first = jwt_signing_secret(Settings(data_dir=tmp_path))
    assert len(first) >= 32
    assert jwt_signing_secret(Settings(data_dir=tmp_path)) == first
    mode = stat.S_IMODE(os.stat(tmp_path / "jwt_secret").st_mode)
    assert mode == 0o600


@pytest.mark.parametrize("secret", ["secret", "changeme", "short-but-not-default"])
def test_weak_jwt_secrets_are_refused(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ValidationError, match="JWT secret"):
        Settings(data_dir=tmp_path, jwt_secret=secret)


def test_unknown_region_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="unknown region"):
        Settings(data_dir=tmp_path, region="mars-1")


def test_insight_leases_outlive_two_renewals(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="insight_heartbeat_seconds"):
        Settings(data_dir=tmp_path, insight_lease_seconds=3, insight_heartbeat_seconds=2)
    assert Settings(data_dir=tmp_path, insight_lease_seconds=4, insight_heartbeat_seconds=2).insight_port == 8090
