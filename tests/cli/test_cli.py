from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from tars.cli.main import cli
from tars.services.auth import AuthenticationFailed
from tars.wiring.runtime import build_runtime
from tests.conftest import PASSWORD, TEST_SECRET, make_settings


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., tuple[int, str]]:
    runner = CliRunner()
    env = {"TARS_DATA_DIR": str(tmp_path), "TARS_JWT_SECRET": TEST_SECRET, "TARS_REDIS_URL": ""}
    env.pop("TARS_REDIS_URL")

    def invoke(*args: str, input: str | None = None) -> tuple[int, str]:
        result = runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)
        return result.exit_code, result.output

    return invoke


def test_db_upgrade_status_and_downgrade(run_cli: Callable[..., tuple[int, str]]) -> None:
    code, out = run_cli("db", "status")
    assert code == 0 and "current: empty" in out and "needs `tars db upgrade`" in out
    code, out = run_cli("db", "upgrade")
    assert code == 0 and "was empty" in out
    code, out = run_cli("db", "status")
    assert code == 0 and "up to date" in out
    code, out = run_cli("db", "downgrade", "base")
    assert code == 0 and "database at base" in out


def test_users_create_reads_the_password_from_stdin(run_cli: Callable[..., tuple[int, str]]) -> None:
    code, out = run_cli("users", "create", "alice", "--role", "operator", "--password-stdin", input=PASSWORD + "\n")
    assert (code, out.strip()) == (0, "created user alice (operator)")
    code, out = run_cli("users", "create", "alice", "--password-stdin", input=PASSWORD + "\n")
    assert code == 1 and "already exists" in out
    code, out = run_cli("users", "create", "bob", "--password-stdin", input="short\n")
    assert code == 1 and "password" in out
    code, out = run_cli("users", "create", "carol", "--role", "root", "--password-stdin", input=PASSWORD + "\n")
    assert code == 2 and "root" in out


def test_worker_needs_redis(run_cli: Callable[..., tuple[int, str]]) -> None:
    code, out = run_cli("worker")
    assert code == 1 and "TARS_REDIS_URL" in out


def test_invalid_settings_are_reported(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["db", "status"], env={"TARS_DATA_DIR": str(tmp_path), "TARS_REGION": "moon-1"})
    assert result.exit_code == 1 and "unknown region 'moon-1'" in result.output


def test_apikeys_create_list_and_revoke_reach_a_running_service(
    run_cli: Callable[..., tuple[int, str]], tmp_path: Path
) -> None:
    assert run_cli("users", "create", "ci-bot", "--role", "operator", "--password-stdin", input=PASSWORD + "\n")[0] == 0
    code, out = run_cli("apikeys", "create", "--user", "ci-bot", "--role", "admin")
    assert code == 1 and "cannot have more than its user" in out
    code, out = run_cli("apikeys", "create", "--user", "ci-bot", "--role", "operator", "--expires-in", "soon")
    assert code == 1 and "expires_in" in out
    code, out = run_cli(
        "apikeys", "create", "--user", "ci-bot", "--role", "viewer", "--expires-in", "30d", "--name", "ci"
    )
    assert code == 0
    key = out.strip().splitlines()[-1]
    prefix = key[:17]
    assert prefix.startswith("tars_") and f"created API key {prefix}" in out

    # A service of this deployment (embedded: same data directory) authenticates with it, from its cache.
    service = build_runtime(make_settings(tmp_path), migrate_schema=False)
    try:
        assert service.security.authenticator.authenticate(key).username == "ci-bot"
        code, out = run_cli("apikeys", "list")
        assert code == 0 and prefix in out and "ci-bot" in out and key[18:] not in out
        code, out = run_cli("apikeys", "revoke", prefix)
        assert (code, out.strip()) == (0, f"revoked API key {prefix}")
        with pytest.raises(AuthenticationFailed, match="revoked"):
            service.security.authenticator.authenticate(key)
    finally:
        service.close()
    code, out = run_cli("apikeys", "revoke", prefix)
    assert code == 1 and "already revoked" in out
    code, out = run_cli("apikeys", "list")
    assert prefix not in out
    code, out = run_cli("apikeys", "list", "--all")
    assert prefix in out and "revoked" in out


def test_dev_seed_adds_realistic_evaluations(run_cli: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    code, out = run_cli("dev", "seed", "--evaluations", "3200", "--days", "10")
    assert code == 0 and out.startswith("added 3,200 evaluations")
    runtime = build_runtime(make_settings(tmp_path), migrate_schema=False)
    try:
        with runtime.sessions() as session:
            rows = session.execute(
                text("SELECT agent_id, environment, region, status, reward, created_at FROM evaluations")
            ).all()
    finally:
        runtime.close()
    assert len(rows) == 3200
    combinations = {(agent, region) for agent, _, region, *_ in rows}
    assert len(combinations) == 16  # 4 built-in agents x 4 regions
    assert {(agent, environment) for agent, environment, *_ in rows} >= {
        ("ppo", "CartPole-v1"),
        ("ddpg", "Pendulum-v1"),
    }
    assert 0 < sum(status == "failed" for *_, status, _, _ in rows) < 100
    times = sorted(str(row[-1]) for row in rows)
    assert times[0] < times[-1]
    code, out = run_cli("dev", "seed", "--evaluations", "0")
    assert code == 2
